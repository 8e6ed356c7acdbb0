"""CPU speed of the fused C++ kernels, all ratios measured in one run.

    python bench/cpu_speed.py                 # all shapes, 7 repetitions (medians)
    python bench/cpu_speed.py --reps 11 --shapes 256x32768
    python bench/cpu_speed.py --compare-extension OLD.so    # before / after a kernel change
    python bench/cpu_speed.py --compare-capabilities avx2,avx512

Forward + backward of ReDGE (hard, n_steps=5, t_1=0.5) on fp32 logits, ``y.backward(g)``:

* ``redge_kernels`` : ``rk.redge(x, backend="cpu")`` (C++ kernels, seed drawn per call);
  its large outputs come from the CPU output pool (csrc/output_pool.cpp: buffers freed by the
  previous call are reused instead of being page-faulted in again);
* ``redge_kernels, pool off``: the same with the pool bypassed for the call
  (``pool_set_enabled(False)``; what it holds is kept), i.e. with fresh outputs from glibc as
  every other method here gets;
* ``redge eager``   : the authors' package, ``redge.redge(x, n_steps=5, t_1=0.5)``;
* ``redge compiled``: ``torch.compile`` of the same function (compile time excluded);
* ``gumbel_softmax``: ``torch.nn.functional.gumbel_softmax(x, hard=True)``;
* ``copy floor``    : ``torch.Tensor.copy_`` into a preallocated buffer moving the same number of
  bytes as the fused op's lower bound (forward reads phi, writes y; backward reads phi and g,
  writes grad: 5 * 4 * R * K bytes).
* ``noise floor``   : the C++ kernels' own generator (the development hook
  ``redge_kernels_cpu::_noise_into``) drawing the normal z twice: once for the forward, once more
  for the backward, which regenerates z from the seed instead of storing it (docs/SPEC.md
  "Randomness"). One Philox4x32-10 call gives the z of four columns (stream 0); the forward also
  draws the stream-1 words of its Gumbel-max, turning only a few of them into G (pruned
  sampling), so stream 1 is left out. Compute, not bytes: on a CPU this, not the copy floor,
  bounds any kernel of this design.

Repetitions are interleaved (one call of every method per round) so that load from other
processes on a shared machine hits all methods alike; the table gives medians, min-max, and the
ratio of each method's median to ours. Times are taken with glibc's default allocator settings
(what a user's process has). Peak extra memory is measured in a child process started with
``MALLOC_MMAP_THRESHOLD_=65536 MALLOC_TRIM_THRESHOLD_=65536`` (blocks of >= 64 KiB straight from /
back to the OS, so that the heap hides no peak), one call per method after two warm-up calls: the
peak resident set during one forward + backward above the resident set before it, in units of one
R x K fp32 buffer; it includes the outputs y and grad (2 buffers): the output pool is emptied
before the measured call (``pool_clear``), so they count as allocated by it. Not visible to this
probe: each thread's kernel scratch, which redge_kernels keeps between calls (10 rows of K floats
per thread for the ReDGE backward at n_steps = 5: 0.04 R x K buffers per thread at 256 x 32768).
The floors write into preallocated buffers.

Before / after: ``--compare-extension OLD.so`` times ``redge_kernels (cpu)`` only, in child
processes that alternate between a copy of an older build of the extension (``redge_kernels/_C``,
kept under another path) and the current one, ``--rounds`` rounds of ``--reps`` samples each, so
that both see the same load; ``--compare-capabilities avx2,avx512`` does the same with the current
build's kernel sets (``REDGE_KERNELS_CPU_KERNELS``: only this project's kernels change; ATen's
own capability, which the ops around the call use, stays the machine's, since
``ATEN_CPU_CAPABILITY=avx2`` would also move PyTorch's own kernels). The table gives the medians over all samples and
the ratio new / old (below 1: faster); ``--clock thread --threads 1`` times the calling thread's
CPU time, which a loaded shared machine disturbs far less than the wall clock.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

_EXTENSION = os.environ.get("REDGE_KERNELS_BENCH_EXTENSION")
if _EXTENSION:  # a child of --compare-extension: this build of redge_kernels._C instead
    import importlib.util

    _spec = importlib.util.spec_from_file_location("redge_kernels._C", _EXTENSION)
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["redge_kernels._C"] = _mod
    _spec.loader.exec_module(_mod)

import redge_kernels as rk  # noqa: E402

N_STEPS, T_1 = 5, 0.5


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(field)


def peak_extra_bytes(fn) -> int:
    """Peak RSS during fn() minus the RSS before it (Linux; resets the high-water mark). The
    output pool of redge_kernels is emptied first, so that its outputs count as allocated."""
    torch.ops.redge_kernels_cpu._pool_clear()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return -1
    before = _rss_kib("VmRSS:")
    fn()
    return (_rss_kib("VmHWM:") - before) * 1024


def make_methods(x, g, with_authors: bool):
    def ours():
        y = rk.redge(x, n_steps=N_STEPS, t_1=T_1, hard=True, backend="cpu")
        y.backward(g)
        x.grad = None

    def ours_pool_off():
        old = torch.ops.redge_kernels_cpu._pool_set_enabled(False)
        try:
            y = rk.redge(x, n_steps=N_STEPS, t_1=T_1, hard=True, backend="cpu")
            y.backward(g)
            x.grad = None
            del y
        finally:
            torch.ops.redge_kernels_cpu._pool_set_enabled(old)

    methods = {"redge_kernels (cpu)": ours, "redge_kernels, pool off": ours_pool_off}
    if with_authors:
        import redge

        def eager():
            y = redge.redge(x, n_steps=N_STEPS, t_1=T_1, hard=True)
            y.backward(g)
            x.grad = None

        compiled_fn = torch.compile(lambda v: redge.redge(v, n_steps=N_STEPS, t_1=T_1, hard=True))

        def compiled():
            y = compiled_fn(x)
            y.backward(g)
            x.grad = None

        methods["redge eager (authors)"] = eager
        methods["redge torch.compile"] = compiled

    def gumbel():
        y = F.gumbel_softmax(x, hard=True)
        y.backward(g)
        x.grad = None

    methods["F.gumbel_softmax(hard)"] = gumbel
    n_copy = (5 * x.numel()) // 2  # read + write of n_copy floats = 5 R K floats moved
    src = torch.randn(n_copy)
    dst = torch.empty(n_copy)
    methods["copy floor (same bytes)"] = lambda: dst.copy_(src)
    seed = torch.tensor(12345)
    z_buf = torch.empty(x.shape)
    no_g = torch.empty(0)

    def noise_floor():
        torch.ops.redge_kernels_cpu._noise_into(seed, 0, 0, z_buf, no_g)  # forward's z
        torch.ops.redge_kernels_cpu._noise_into(seed, 0, 0, z_buf, no_g)  # backward's z again

    methods["noise floor (z twice)"] = noise_floor
    return methods


def make_inputs(rows: int, k: int, with_authors: bool):
    torch.manual_seed(0)
    x = torch.randn(rows, k, requires_grad=True)
    g = torch.randn(rows, k)
    return make_methods(x, g, with_authors)


def bench_shape(rows: int, k: int, reps: int, with_authors: bool):
    """(times per method, calls per sample) of one shape."""
    methods = make_inputs(rows, k, with_authors)
    # Calls per timed sample: enough for ~20 ms of our kernel at small shapes.
    inner = max(1, int(2e6 // (rows * k)))
    for fn in methods.values():  # warm-up (and compile)
        for _ in range(2):
            fn()
    times = {name: [] for name in methods}
    for _ in range(reps):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - t0) / inner)
    return times, inner


def memory_peaks(shapes, with_authors: bool) -> dict:
    """{shape: {method: peak extra bytes}} (this process must run with the mmap thresholds set)."""
    out = {}
    for rows, k in shapes:
        methods = make_inputs(rows, k, with_authors)
        peaks = {}
        for name, fn in methods.items():
            if "floor" in name:
                continue
            fn()
            fn()  # warm-up (and compile)
            peaks[name] = peak_extra_bytes(fn)
        out[f"{rows}x{k}"] = peaks
    return out


#: The checkout this file belongs to: a child process imports its redge_kernels, not whichever
#: copy the interpreter would find first from bench/ (an installed one, another checkout).
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child_env(**extra) -> dict:
    path = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, **extra)


def memory_peaks_in_child(args, with_authors: bool) -> dict:
    env = _child_env(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="65536")
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-json", "--shapes", args.shapes]
    if not with_authors:
        cmd.append("--no-authors")
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        print(f"note: memory probe failed ({res.stderr.strip().splitlines()[-1:]})")
        return {}
    return json.loads(res.stdout.strip().splitlines()[-1])


def ours_times(shapes, reps: int, clock=time.perf_counter) -> dict:
    """{shape: [seconds per call]} of redge_kernels (cpu) only (a child of the comparisons)."""
    out = {}
    for rows, k in shapes:
        fn = make_inputs(rows, k, False)["redge_kernels (cpu)"]
        inner = max(1, int(2e6 // (rows * k)))
        fn()
        fn()
        ts = []
        for _ in range(reps):
            t0 = clock()
            for _ in range(inner):
                fn()
            ts.append((clock() - t0) / inner)
        out[f"{rows}x{k}"] = ts
    try:
        out["kernel set"] = torch.ops.redge_kernels_cpu._kernel_set()
    except AttributeError:  # an older build (--compare-extension) without the hook
        out["kernel set"] = None
    return out


def compare(args, variants) -> None:
    """Alternating child processes, one per (variant, round): variants = [(label, env)]."""
    times = {label: {} for label, _ in variants}
    for _ in range(args.rounds):
        for label, extra in variants:
            cmd = [sys.executable, os.path.abspath(__file__), "--times-json", "--shapes",
                   args.shapes, "--reps", str(args.reps), "--clock", args.clock]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            res = subprocess.run(cmd, env=_child_env(**extra), capture_output=True,
                                 text=True, check=True)
            got = json.loads(res.stdout.strip().splitlines()[-1])
            want = extra.get("REDGE_KERNELS_CPU_KERNELS")
            if want is not None and got["kernel set"] != want:
                sys.exit(f"asked for the kernel set {want!r}, the child ran {got['kernel set']!r}"
                         " (a set this CPU cannot run?)")
            del got["kernel set"]
            for shape, ts in got.items():
                times[label].setdefault(shape, []).extend(ts)
    (old, _), (new, _) = variants
    print(f"| shape | {old} median ms | {new} median ms | {new} / {old} |")
    print("|---|---:|---:|---:|")
    for shape in times[old]:
        a, b = statistics.median(times[old][shape]), statistics.median(times[new][shape])
        print(f"| {shape} | {a * 1e3:.3f} | {b * 1e3:.3f} | {b / a:.3f} |")
    print(f"\n# {args.rounds} rounds x {args.reps} samples per variant, {args.clock} clock; "
          f"load average {os.getloadavg()[0]:.1f} (end)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--shapes", default="256x32768,9600x2,6400x64")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--no-authors", action="store_true", help="skip the authors' redge package")
    p.add_argument("--memory-json", action="store_true", help=argparse.SUPPRESS)  # the child's mode
    p.add_argument("--times-json", action="store_true", help=argparse.SUPPRESS)  # the child's mode
    p.add_argument("--compare-extension", metavar="OLD_SO",
                   help="before / after: an older build of redge_kernels/_C against the current one")
    p.add_argument("--compare-capabilities", metavar="A,B",
                   help="two kernel sets of the current build, e.g. avx2,avx512")
    p.add_argument("--rounds", type=int, default=6, help="alternations of the comparisons")
    p.add_argument("--clock", choices=("wall", "thread"), default="wall",
                   help="comparisons: wall time, or the calling thread's CPU time (with --threads 1: "
                        "robust to other processes taking the cores)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if "cpu" not in rk.available_backends():
        sys.exit("the C++ extension is not built: pip install --no-build-isolation -e .")
    with_authors = not args.no_authors
    if with_authors:
        try:
            import redge  # noqa: F401
        except ImportError:
            print("note: `redge` not installed (pip install --no-deps redge==0.1.0 reinmax==0.1.0); "
                  "skipping the authors' baselines")
            with_authors = False

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"# cpu_speed: {cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"capability {torch.backends.cpu.get_cpu_capability()}, "
          f"load average {os.getloadavg()[0]:.1f} (start), reps {args.reps}")
    print(f"# ReDGE hard, n_steps={N_STEPS}, t_1={T_1}, fp32, forward + backward (y.backward(g))\n")
    shapes = [tuple(int(v) for v in shape.lower().split("x")) for shape in args.shapes.split(",")]
    if args.times_json:
        clock = time.thread_time if args.clock == "thread" else time.perf_counter
        print(json.dumps(ours_times(shapes, args.reps, clock)))
        return
    if args.compare_extension:
        compare(args, [("old", {"REDGE_KERNELS_BENCH_EXTENSION": os.path.abspath(args.compare_extension)}),
                       ("new", {})])
        return
    if args.compare_capabilities:
        a, b = args.compare_capabilities.split(",")
        compare(args, [(a, {"REDGE_KERNELS_CPU_KERNELS": a}), (b, {"REDGE_KERNELS_CPU_KERNELS": b})])
        return
    if args.memory_json:
        print(json.dumps(memory_peaks(shapes, with_authors)))
        return
    runs = [(rows, k) + bench_shape(rows, k, args.reps, with_authors) for rows, k in shapes]
    all_peaks = memory_peaks_in_child(args, with_authors)
    for rows, k, times, inner in runs:
        peaks = all_peaks.get(f"{rows}x{k}", {})
        ours = statistics.median(times["redge_kernels (cpu)"])
        buf = rows * k * 4
        print(f"## {rows} x {k}  ({inner} call(s) per sample)\n")
        print("| method | median ms | min - max ms | median / ours | peak extra memory (R x K buffers) |")
        print("|---|---:|---:|---:|---:|")
        for name, ts in times.items():
            med = statistics.median(ts)
            peak = peaks.get(name)
            peak_s = "-" if peak is None or peak < 0 else f"{peak / buf:.2f} ({peak / 2**20:.1f} MiB)"
            print(f"| {name} | {med * 1e3:.3f} | {min(ts) * 1e3:.3f} - {max(ts) * 1e3:.3f} | "
                  f"{med / ours:.2f}x | {peak_s} |")
        print()
    print(f"# load average {os.getloadavg()[0]:.1f} (end)")


if __name__ == "__main__":
    main()
