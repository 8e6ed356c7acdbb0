"""NCCL stage of bench/gpu_check.sh: the vocabulary-parallel estimators over NCCL on CUDA against
the unsharded call (docs/SPEC.md "Vocabulary-parallel"; docs/DISTRIBUTED.md).

    python bench/nccl_check.py [--rows 64] [--vocab 50257] [--gloo N]

Spawns one process per visible GPU (one process when there is a single GPU: a group of one
still runs every collective through NCCL), each holding an unequal, not 4-aligned shard of the
vocabulary. Every rank runs every case forward and backward through
``redge_kernels.distributed.sample`` (the step ops' Triton kernels) and compares its shard with
the same columns of the unsharded public call on the Triton backend with the same seed: indices
exactly, values and gradients to fp32 tolerance. Prints one PASS / FAIL line per case and exits
non-zero when a case fails or a rank dies. ``--gloo N`` runs the same script on CPU (N processes
over gloo, against ``backend="cpu"``), a dry run of the stage on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
import traceback

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

CASES = [("st", False), ("gumbel", True), ("reinmax", True), ("redge", True), ("redge", False),
         ("redge_cov", True), ("redge_max", True)]


def _sizes(vocab: int, world: int) -> list[int]:
    """Unequal widths, starts not multiples of 4 (rank r gets about (r + 1) parts)."""
    weights = list(range(1, world + 1))
    sizes = [vocab * w // sum(weights) for w in weights]
    sizes[-1] += vocab - sum(sizes)
    return sizes


def _case(rank, world, group, method, hard, rows, vocab, device, unsharded_backend):
    import redge_kernels as rk
    from redge_kernels import api, distributed
    sizes = _sizes(vocab, world)
    c0 = sum(sizes[:rank])
    cols = slice(c0, c0 + sizes[rank])
    gen = torch.Generator().manual_seed(sum(map(ord, method)))
    phi = (2.0 * torch.randn(rows, vocab, generator=gen)).to(device)
    phi[0, :] = float("-inf")  # an all-masked row
    phi[1, :sizes[0]] = float("-inf")  # rank 0's shard masked in one row
    grad = torch.randn(rows, vocab, generator=gen).to(device)
    kw = dict(hard=hard, tau=0.7, schedule=rk.linear_schedule(4, 0.5), seed=1234,
              return_index=True)
    leaf = phi.clone().requires_grad_()
    y_ref, i_ref = api.sample(method, leaf, backend=unsharded_backend, **kw)
    (y_ref * grad).sum().backward()
    local = phi[:, cols].clone().requires_grad_()
    y, index = distributed.sample(method, local, group=group, **kw)
    (y * grad[:, cols]).sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    if not torch.equal(index, i_ref):
        return f"indices differ in {(index != i_ref).sum().item()} rows"
    torch.testing.assert_close(y, y_ref[:, cols].detach(), equal_nan=True)
    torch.testing.assert_close(local.grad, leaf.grad[:, cols], equal_nan=True)
    return ""


def _worker(rank, world, init_file, out_dir, rows, vocab, comm):
    timeout = datetime.timedelta(seconds=120)
    if comm == "nccl":
        device, unsharded = torch.device("cuda", rank), "triton"
        torch.cuda.set_device(rank)
        dist.init_process_group("nccl", init_method=f"file://{init_file}", rank=rank,
                                world_size=world, timeout=timeout, device_id=device)
    else:  # the same script on CPU over gloo, against the C++ kernels (a dry run of this stage)
        device, unsharded = torch.device("cpu"), "cpu"
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                world_size=world, timeout=timeout)
    lines = []
    for method, hard in CASES:
        name = f"{method}-{'hard' if hard else 'soft'}"
        start = time.perf_counter()
        try:
            msg = _case(rank, world, dist.group.WORLD, method, hard, rows, vocab, device,
                        unsharded)
        except Exception as exc:  # noqa: BLE001 (reported as a failed case)
            msg = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-400:]
        took = time.perf_counter() - start
        verdict = f"FAIL {name} ({took:.2f} s): {msg}" if msg else f"PASS {name} ({took:.2f} s)"
        lines.append(verdict)
    with open(os.path.join(out_dir, f"rank{rank}.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    dist.destroy_process_group()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--gloo", type=int, default=0, metavar="N",
                        help="dry run: N CPU processes over gloo, against backend='cpu'")
    args = parser.parse_args(argv)
    comm = "gloo" if args.gloo else "nccl"
    if comm == "nccl" and not (torch.cuda.is_available() and dist.is_available()
                               and dist.is_nccl_available()):
        print("FAIL nccl stage: needs CUDA and torch.distributed with NCCL")
        return 1
    world = args.gloo or torch.cuda.device_count()
    print(f"{comm} check: {world} process(es), shards {_sizes(args.vocab, world)} of "
          f"{args.rows} x {args.vocab}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            mp.spawn(_worker, args=(world, os.path.join(tmp, "rdzv"), tmp, args.rows, args.vocab,
                                    comm), nprocs=world, join=True)
        except Exception as exc:  # noqa: BLE001 (a rank died)
            print(f"FAIL a rank exited: {exc}")
            return 1
        status = 0
        for rank in range(world):
            text = open(os.path.join(tmp, f"rank{rank}.txt")).read()
            status |= "FAIL" in text
            print(f"rank {rank}:\n{text}", end="")
    print(f"{comm} check:", "FAIL" if status else "PASS")
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
