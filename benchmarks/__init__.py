"""Benchmark suites for art_ext: ``python benchmarks/run.py --suite NAME``."""
