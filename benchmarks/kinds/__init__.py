"""Suite kinds. Each module offers ``SCHEMA`` (its keys, ``benchmarks.schema``), ``run(suite, ctx)`` (list its work
units and run them with ``ctx.run_units``) and ``report(suite, rows, out, manifest)`` (its summary from the rows,
rendered by ``benchmarks/report/<kind>.py``, which returns the Markdown); optionally ``check(suite)`` (rules across
keys), ``config_ids(suite)`` (``[(where, config id)]``, checked unique before any work), ``prepare(suite, roots)``
(reference checks, what the manifest records). ``benchmarks.specs.build`` validates a suite for its kind once.

A new kind is one module here and one line in ``KINDS``.
"""

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
