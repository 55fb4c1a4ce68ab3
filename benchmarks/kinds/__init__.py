"""Suite kinds: each module offers ``run(suite, ctx)`` (append rows) and ``report(suite, rows, out, manifest)``
(write tables and plots from the rows, return Markdown)."""

from types import ModuleType

from benchmarks.kinds import attacks, bn_adaptation, certify, normalized_noise, smoothed_inference

KINDS: dict[str, ModuleType] = {
    "attacks": attacks,
    "bn_adaptation": bn_adaptation,
    "certify": certify,
    "normalized_noise": normalized_noise,
    "smoothed_inference": smoothed_inference,
}
