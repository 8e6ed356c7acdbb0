"""The timing half of ``bench/gpu_check.sh`` (a CUDA machine; ``--dry-run`` on CPU).

    python -m bench.gpu_check --model bench/gpu_model_baseline.jsonl --report report.md
        [--budget-s 240] [--dry-run]

0. Every estimator at real sizes (4096 x 32768, 8 x 262144, 9600 x 2, 5184 x 9) against the
   pure-PyTorch reference backend, same seed: indices identical, values and gradients close.
1. Times every workload of the model's records (``python -m bench.gpu_model --json``) with CUDA
   events around the Triton launchers the op runs on CUDA (``redge_kernels.triton.fwd`` /
   ``.bwd``, the forward's outputs kept for the backward) and prints measured beside predicted (for the machine the device name says: H100 or
   H200) and the measured fraction of HBM bandwidth for the docs/SPEC.md byte floor.
2. fwd+bwd of redge at 4096 x 32768, n_steps = 5 against the authors' eager ``redge`` and
   ``torch.compile`` of it: median time and peak memory beyond the inputs, with the targets
   (>= 10x eager, >= 4x compiled, >= 5x less peak memory).
Writes one markdown report. ``--dry-run`` runs the same code on CPU with every shape cut to a few
rows and K <= 64, the Triton interpreter, wall-clock timing and ``torch.compile(backend="eager")``,
so that the script's Python is exercised without a GPU (tests/test_gpu_model.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time

if os.environ.get("GPU_CHECK_DRY_RUN") == "1" or "--dry-run" in sys.argv[1:]:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported

import torch  # noqa: E402


@dataclasses.dataclass
class Env:
    device: torch.device
    dry: bool
    budget_s: float
    started: float = dataclasses.field(default_factory=time.time)

    def left(self) -> float:
        return self.budget_s - (time.time() - self.started)


def _sync(env):
    if env.device.type == "cuda":
        torch.cuda.synchronize()


def time_ms(fn, env: Env, reps: int = 20) -> float:
    """Median ms of ``fn`` over ``reps`` calls after 3 warm-ups (CUDA events on a GPU)."""
    for _ in range(2 if env.dry else 3):
        fn()
    _sync(env)
    out = []
    for _ in range(2 if env.dry else reps):
        if env.device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            out.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def peak_mb(fn, env: Env) -> float | None:
    """Peak CUDA memory beyond what was allocated before ``fn`` (None on CPU)."""
    if env.device.type != "cuda":
        return None
    _sync(env)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    _sync(env)
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def _shape(w: dict, env: Env) -> tuple[int, int]:
    return (min(w["rows"], 4), min(w["k"], 64)) if env.dry else (w["rows"], w["k"])


def _op_calls(w: dict, env: Env):
    """``(call, floor_bytes)`` of one direction of a model workload through the op."""
    from bench.kernel_compile import DEFAULT_TAU, _coefs, torch_dtype
    from bench.kernel_compile import Workload
    from redge_kernels import triton as ops  # the launchers the op runs on CUDA
    from redge_kernels._constants import METHOD_IDS
    rows, k = _shape(w, env)
    wl = dataclasses.replace(Workload(**w), rows=rows, k=k)
    dt = torch_dtype(wl.dtype)
    phi = torch.randn(rows, k, device=env.device).to(dt)
    seed = torch.full((), 7, dtype=torch.int64, device=env.device)
    coefs = _coefs(wl, env.device)
    mid, tau = METHOD_IDS[wl.method], DEFAULT_TAU.get(wl.method, 1.0)
    y, stats, index = ops.fwd(phi, seed, coefs, mid, wl.hard, tau)
    n = rows * k * phi.element_size()
    if wl.direction == "fwd":
        return (lambda: ops.fwd(phi, seed, coefs, mid, wl.hard, tau)), 2 * n
    g = torch.randn_like(phi)
    return (lambda: ops.bwd(g, phi, seed, coefs, stats, index, mid, wl.hard, tau)), 3 * n


def model_rows(records: list[dict], env: Env) -> list[str]:
    """Markdown rows: measured beside predicted for every record of the model."""
    from bench.gpu_machines import H100_SXM, H200
    from bench.gpu_model import predict
    name = torch.cuda.get_device_name() if env.device.type == "cuda" else "cpu (dry run)"
    machine = H200 if "H200" in name else H100_SXM
    out = [f"Device: {name}; predictions for {machine.name} ({machine.hbm_tbs} TB/s).", "",
           "| workload | predicted ms | bound | measured ms | measured / predicted | "
           "measured % floor |", "|---|---|---|---|---|---|"]
    for rec in records:
        if env.left() < 0:
            out.append(f"| {rec['label']} | (budget spent) | | | | |")
            continue
        p = predict(rec, machine)
        fn, floor = _op_calls(rec["workload"], env)
        ms = time_ms(fn, env)
        frac = floor / (machine.hbm_tbs * 1e12) / (ms * 1e-3)
        label = rec["label"] + (" (dry run: %d x %d)" % _shape(rec["workload"], env) if env.dry else "")
        out.append(f"| {label} | {p['us'] / 1e3:.3f} | {p['bound']} | {ms:.3f} | "
                   f"{ms / (p['us'] / 1e3):.2f} | {100 * frac:.1f} |")
        print(out[-1], flush=True)
    return out


def peer_rows(env: Env) -> list[str]:
    """fwd+bwd of redge at 4096 x 32768, n=5: ours against the authors' eager and compiled."""
    import redge_kernels as rk
    rows, k = (4, 64) if env.dry else (4096, 32768)
    x = torch.randn(rows, k, device=env.device, requires_grad=True)
    g = torch.randn(rows, k, device=env.device)
    impls = {"redge_kernels": lambda t: rk.redge(t, n_steps=5, t_1=0.5, backend="triton")}
    try:
        import redge
        eager = lambda t: redge.redge(t, 5, 0.5, hard=True)  # noqa: E731
        impls["authors eager"] = eager
        impls["authors torch.compile"] = torch.compile(
            eager, dynamic=False, backend="eager" if env.dry else "inductor")
    except ImportError as e:
        return [f"authors' redge not importable ({e}): no comparison"]

    def step(f):
        def run():
            x.grad = None
            f(x).backward(g)
        return run

    res = {}
    for name, f in impls.items():
        res[name] = (time_ms(step(f), env, reps=10), peak_mb(step(f), env))
    ours_ms, ours_mb = res["redge_kernels"]
    out = [f"fwd+bwd, redge {rows} x {k}, n_steps = 5, fp32 (median ms; peak MiB beyond inputs)",
           "", "| implementation | ms | peak MiB | our speed-up | our memory saving | target |",
           "|---|---|---|---|---|---|"]
    targets = {"authors eager": ">= 10x faster, >= 5x less memory",
               "authors torch.compile": ">= 4x faster"}
    for name, (ms, mb) in res.items():
        sp = f"{ms / ours_ms:.1f}x"
        mem = f"{mb / ours_mb:.1f}x" if mb is not None and ours_mb else "-"
        out.append(f"| {name} | {ms:.3f} | {mb if mb is None else round(mb, 1)} | {sp} | {mem} | "
                   f"{targets.get(name, '')} |")
    return out


def real_size_rows(env: Env) -> list[str]:
    """Every estimator at real sizes on the GPU against the pure-PyTorch reference backend, same
    seed: sampled indices identical, forward values and gradients close (fp32)."""
    import redge_kernels as rk
    from redge_kernels.schedule import make_schedule
    shapes = [(4, 64), (3, 9)] if env.dry else [(4096, 32768), (8, 262144), (9600, 2), (5184, 9)]
    out = ["| estimator | shape | indices equal | max abs error y | max abs error grad |",
           "|---|---|---|---|---|"]
    for method in ("redge", "redge_cov", "redge_max", "st", "gumbel", "reinmax"):
        for rows, k in shapes:
            if env.left() < 0:
                out.append(f"| {method} | {rows} x {k} | (budget spent) | | |")
                continue
            kw = {"schedule": make_schedule(5, 0.5)} if method.startswith("redge") else {}
            if method == "gumbel":
                kw["tau"] = 0.5
            x = torch.randn(rows, k, device=env.device, generator=None)
            g = torch.randn(rows, k, device=env.device)
            res = {}
            for backend in ("triton", "reference"):
                xl = x.clone().requires_grad_(True)
                y, idx = rk.sample(method, xl, seed=1234, backend=backend, return_index=True, **kw)
                y.backward(g)
                res[backend] = (y.detach(), idx, xl.grad)
            (yt, it, gt), (yr, ir, gr) = res["triton"], res["reference"]
            out.append(f"| {method} | {rows} x {k} | {bool(torch.equal(it, ir))} | "
                       f"{(yt - yr).abs().max().item():.2e} | {(gt - gr).abs().max().item():.2e} |")
            print(out[-1], flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="records of python -m bench.gpu_model --json")
    ap.add_argument("--report", required=True)
    ap.add_argument("--budget-s", type=float, default=240.0)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--limit", type=int, default=None, help="first N model records only")
    args = ap.parse_args(argv)
    dry = args.dry_run or os.environ.get("GPU_CHECK_DRY_RUN") == "1"
    if not dry and not torch.cuda.is_available():
        print("no CUDA device: use --dry-run", file=sys.stderr)
        return 2
    env = Env(torch.device("cpu" if dry else "cuda"), dry, args.budget_s)
    with open(args.model) as f:
        records = [json.loads(line) for line in f if line.strip()][:args.limit]
    lines = ["# GPU check", "", f"torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             ""]
    lines += ["## Real sizes against the reference backend", ""] + real_size_rows(env)
    lines += ["", "## Measured beside the model", ""]
    lines += model_rows(records, env)
    lines += ["", "## Against the authors' redge", ""] + peer_rows(env)
    with open(args.report, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"report: {args.report} ({time.time() - env.started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
