"""Benchmarks of redge_kernels (issue 5): ``python -m bench.report`` and ``python -m pytest bench/``.
See docs/BENCHMARKS.md."""
