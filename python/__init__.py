"""Applications of redge_kernels: the paper's experiments (section 4) plus LM reward guidance.

Run one experiment with ``python -m python.<name>`` (polynomial, gmm, sudoku, vae, lm_guidance) or
all of them with ``python -m python.run_all``; ``--quick`` gives the small CI run. Results page:
``python/README.md``.
"""
