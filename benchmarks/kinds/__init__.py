"""Suite kinds: each module offers ``run(suite, ctx)`` (append rows) and ``report(suite, rows, out, manifest)``
(write tables and plots from the rows, return Markdown)."""

from types import ModuleType

from benchmarks.kinds import bn_adaptation, certify

KINDS: dict[str, ModuleType] = {"bn_adaptation": bn_adaptation, "certify": certify}
