"""Constants shared by every backend (docs/SPEC.md "Time grid", "ReDGE-Cov", "Randomness")."""

#: Last alpha of the authors' linear schedule: alphas = linspace(1 - t_1, ALPHA_END, n - 1).
ALPHA_END = 1e-4
#: Floor of the ReDGE-Cov base variance v = max(p (1 - p), V_MIN).
V_MIN = 0.1

#: Method ids passed to the fused ops (`redge_kernels::fwd` / `::bwd`). Names follow the authors'
#: `SAMPLERS` keys except ReDGE-Max, called ``redge_max`` here (``reindge`` in the authors' package).
METHOD_IDS = {
    "st": 0,
    "gumbel": 1,
    "reinmax": 2,
    "redge": 3,
    "redge_cov": 4,
    "redge_max": 5,
}
#: Methods that run the DDIM denoising chain (they use the schedule rows k = 1 .. n-1).
DIFFUSION_METHODS = ("redge", "redge_cov", "redge_max")

#: Columns of the per-step schedule table `coefs[n_steps, 5]` handed to the kernels.
COEF_C, COEF_A, COEF_B, COEF_ALPHA, COEF_SIGMA = range(5)
