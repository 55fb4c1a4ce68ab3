"""Suite kinds: each module offers ``run(suite, ctx)`` (list its work units and run them with ``ctx.run_units``) and
``report(suite, rows, out, manifest)`` (write tables and plots from the rows, return Markdown)."""

from types import ModuleType

from benchmarks.kinds import (
    attacks,
    bn_adaptation,
    certified_training,
    certify,
    compare,
    normalized_noise,
    smoothed_inference,
)

KINDS: dict[str, ModuleType] = {
    "attacks": attacks,
    "bn_adaptation": bn_adaptation,
    "certified_training": certified_training,
    "certify": certify,
    "compare": compare,
    "normalized_noise": normalized_noise,
    "smoothed_inference": smoothed_inference,
}
