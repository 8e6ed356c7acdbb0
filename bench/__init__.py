"""Benchmarks of redge_kernels: ``python -m bench.report`` and ``python -m pytest bench/``.
See docs/BENCHMARKS.md."""
