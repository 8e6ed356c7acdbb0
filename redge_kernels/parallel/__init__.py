"""Vocabulary-parallel estimators over ``torch.distributed`` (docs/SPEC.md "Vocabulary-parallel").

Internals of ``redge_kernels.distributed`` (the public entry point): ``collectives`` (the
all-gathers and their rank-order combination), ``check`` (the once-per-call consistency check),
``steps`` (the estimators on one shard with explicit per-step statistics) and ``function``
(the autograd boundary).
"""
