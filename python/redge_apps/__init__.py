"""Applications of redge_kernels: the paper's experiments (section 4) plus LM reward guidance.

Run one experiment with ``python python/<name>.py`` (polynomial, gmm, sudoku, vae, lm_guidance) or
all of them with ``python python/run_all.py``, from anywhere: those launchers put ``python/`` on
``sys.path`` (as Python does for every script) and call ``redge_apps.<name>.main``. ``--quick``
gives the small CI run. Results page: ``python/README.md``.
"""
