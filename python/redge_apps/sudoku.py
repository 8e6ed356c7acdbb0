"""Sudoku completion by optimising a mean-field categorical law (paper 4.3).

Puzzles: made by ``sudoku_puzzles`` (unique solution verified by the solver, exactly ``--givens``
clues). theta in R^{B x 81 x 9} (B puzzles optimised together; Adam is per coordinate, so the runs
are independent), zero init; clue cells are pinned by setting every other digit's logit to -inf
before each step. Loss per puzzle, on the hard sample y:

    sum over the 27 units u (rows, columns, boxes) and digits d of (sum_{c in u} y_{c,d} - 1)^2

Metrics on the final hard sample (drawn by the sampler from the final theta): the loss and the
solved rate (zero violations), plus the solved rate of the argmax decode of theta and the rate of
puzzles whose sample had zero violations at some step (a solver would stop and check there).
Run: ``python python/sudoku.py [--quick]``.
"""

from __future__ import annotations

import torch

from . import common as C
from . import sudoku_puzzles as P

EXP = "sudoku"
#: The authors' defaults, with their Sudoku README demo setting for ReDGE (EXPERIMENTS.md).
DEFAULTS = {"redge": {"n_steps": 3, "t_1": 0.9}, "redge_cov": {"n_steps": 5, "t_1": 0.5},
            "redge_max": {"n_steps": 5, "t_1": 0.5}, "gumbel": {"tau": 0.5},
            "reinmax": {"tau": 1.0}}


def unit_matrix() -> torch.Tensor:
    """[27, 81] 0/1 membership of cells in rows, columns and boxes."""
    u = torch.zeros(27, 81)
    for r in range(9):
        for c in range(9):
            i = r * 9 + c
            u[r, i] = u[9 + c, i] = u[18 + (r // 3) * 3 + c // 3, i] = 1
    return u


def violations(y: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """[B] penalty sum_{u,d} (count_{u,d} - 1)^2 of one-hot grids y [B, 81, 9]."""
    counts = torch.einsum("uc,bcd->bud", units, y)
    return ((counts - 1) ** 2).sum((1, 2))


def pin_mask(puzzles: torch.Tensor) -> torch.Tensor:
    """[B, 81, 9] True where a logit must be -inf (other digits of a clue cell)."""
    given = puzzles > 0
    onehot = torch.nn.functional.one_hot((puzzles - 1).clamp(min=0), 9).bool()
    return given[..., None] & ~onehot


def run_one(cfg, puzzles: torch.Tensor, *, seed: int, steps: int, lr: float, backend: str,
            device: str, progress: bool = True):
    """Optimise all puzzles [B, 81] (0 = empty) together; returns per-puzzle results and curves."""
    units = unit_matrix().to(device)
    mask = pin_mask(puzzles).to(device)
    g = C.make_generator(seed, device)
    theta = torch.zeros(puzzles.shape[0], 81, 9, device=device, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    timer, loss_curve, solved_curve = C.StepTimer(), [], []
    ever = torch.zeros(puzzles.shape[0], dtype=torch.bool, device=device)
    for _ in C.progress(range(steps), desc=f"{EXP} {cfg.name} s{seed}", disable=not progress):
        with timer:
            y = cfg(theta.masked_fill(mask, float("-inf")), generator=g, backend=backend)
            v = violations(y, units)
            opt.zero_grad(set_to_none=True)
            v.sum().backward()
            opt.step()
        loss_curve.append(float(v.detach().mean()))
        solved_curve.append(float((v.detach() == 0).float().mean()))
        ever |= v.detach() == 0
    with torch.no_grad():
        logits = theta.masked_fill(mask, float("-inf"))
        v_final = violations(cfg(logits, generator=g, backend=backend), units)
        v_argmax = violations(torch.nn.functional.one_hot(logits.argmax(-1), 9).float(), units)
    return {"final_loss": v_final.cpu(), "final_solved": (v_final == 0).cpu(),
            "argmax_solved": (v_argmax == 0).cpu(), "ever_solved": ever.cpu(), "ms_per_step": timer.ms_per_step,
            "loss_curve": loss_curve, "solved_curve": solved_curve}


def make_puzzles(count: int, givens: int, seed: int, progress: bool):
    pz, sols = [], []
    for p, s in C.progress(P.generate(count, givens, seed), total=count,
                           desc=f"puzzles ({givens} givens)", disable=not progress):
        pz.append(p)
        sols.append(s)
    return torch.tensor(pz), sols


def main(argv=None):
    ap = C.base_parser(__doc__.splitlines()[0], steps=1000, seeds=1, lr=0.05)
    ap.add_argument("--puzzles", type=int, default=128, help="number of puzzles (default 128)")
    ap.add_argument("--givens", type=int, default=30, help="clues per puzzle (default 30)")
    ap.add_argument("--puzzle-seed", type=int, default=0)
    ap.add_argument("--tune-puzzles", type=int, default=32,
                    help="puzzles of the separate tuning set (puzzle seed + 1000)")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.puzzles, args.seeds, args.tune_puzzles = 8, 4, "1", 2
        args.tune_steps = args.tune_steps or 3
    out = C.setup(args, EXP)
    prog = not args.no_progress
    puzzles, _ = make_puzzles(args.puzzles, args.givens, args.puzzle_seed, prog)
    with open(out / "puzzles.txt", "w") as f:
        f.write("\n".join(P.to_string(p) for p in puzzles.tolist()) + "\n")
    seeds = C.parse_seeds(args.seeds)
    kw = dict(lr=args.lr, backend=args.backend, device=args.device, progress=prog)
    configs = C.parse_samplers(args.samplers, DEFAULTS)
    tune_set = None

    def objective(cfg):  # separate puzzle set: final mean violations minus solved fraction
        nonlocal tune_set
        if tune_set is None:
            tune_set = make_puzzles(args.tune_puzzles, args.givens, args.puzzle_seed + 1000, prog)[0]
        r = run_one(cfg, tune_set, seed=1000, steps=args.tune_steps or args.steps, **kw)
        return float(r["final_loss"].float().mean()) - float(r["final_solved"].float().mean())

    configs = C.select_configs(args, configs, objective, out, EXP)
    rows, pooled, curves_l, curves_s = [], {}, {}, {}
    for cfg in configs:
        for seed in seeds:
            r = run_one(cfg, puzzles, seed=seed, steps=args.steps, **kw)
            fl = r["final_loss"].float()
            rows.append({"sampler": cfg.name, "setting": cfg.label, "seed": seed,
                         "loss": float(fl.mean()), "loss_std_over_puzzles": float(fl.std()),
                         "solved_pct": 100 * float(r["final_solved"].float().mean()),
                         "argmax_solved_pct": 100 * float(r["argmax_solved"].float().mean()),
                         "ever_solved_pct": 100 * float(r["ever_solved"].float().mean()),
                         "ms_per_step": r["ms_per_step"]})
            pooled.setdefault(cfg, []).append(r)
            curves_l.setdefault(C.PRETTY[cfg.name], []).append(r["loss_curve"])
            curves_s.setdefault(C.PRETTY[cfg.name], []).append(r["solved_curve"])
    metrics = ["loss", "solved_pct", "argmax_solved_pct", "ever_solved_pct", "ms_per_step"]
    summ = C.summarise(rows, ["sampler", "setting"], metrics)
    C.write_csv(out / "runs.csv", rows)
    C.write_csv(out / "summary.csv", summ)
    C.plot_curves(out / "curves.png", curves_l, smooth=10,
                  title=f"Sudoku ({args.puzzles} puzzles, {args.givens} givens): violations of the sample",
                  ylabel="mean violations")
    C.plot_curves(out / "solved.png", curves_s, smooth=10,
                  title="Sudoku: fraction of puzzles whose current sample is a solution",
                  ylabel="solved fraction")
    paper_style = ["| Sampler | setting | Loss (mean ± std over puzzles) | Solved % | "
                   "argmax solved % | solved at any step % |", "|---|---|---|---|---|---|"]
    for cfg, rs in pooled.items():
        fl = torch.cat([r["final_loss"].float() for r in rs])
        sv = torch.cat([r["final_solved"].float() for r in rs])
        am = torch.cat([r["argmax_solved"].float() for r in rs])
        ev = torch.cat([r["ever_solved"].float() for r in rs])
        paper_style.append(f"| {C.PRETTY[cfg.name]} | {cfg.label} | "
                           f"{C.fmt(float(fl.mean()), float(fl.std()) if len(fl) > 1 else 0.0)} | "
                           f"{100 * float(sv.mean()):.2f} | {100 * float(am.mean()):.2f} | "
                           f"{100 * float(ev.mean()):.2f} |")
    md = C.header_lines(args, EXP, args.device, [
        f"{args.puzzles} puzzles, {args.givens} givens each, unique solution verified "
        f"(generator seed {args.puzzle_seed}; puzzles.txt)",
        "metrics on the final hard sample from the final theta; argmax: decode of theta; "
        "solved at any step: some step's sample had zero violations (a solver would stop there)",
        "settings: " + ", ".join(c.label for c in configs)])
    md += ["## Paper's format (all puzzles and seeds pooled)", ""] + paper_style + [
        "", "## Mean ± std over seeds", "",
        C.markdown_table(summ, ["sampler", "setting"], metrics,
                         digits={"ms_per_step": 1}), "", "![](curves.png)", "", "![](solved.png)"]
    C.write_text(out / "results.md", "\n".join(md))
    return rows


if __name__ == "__main__":
    main()
