"""Vocabulary-parallel ReDGE behind a tensor-parallel LM head (CPU with gloo, or GPUs with NCCL).

    torchrun --nproc-per-node 2 examples/vocab_parallel.py
    torchrun --nproc-per-node 4 examples/vocab_parallel.py --steps 5

Each rank holds a contiguous shard of the vocabulary: the LM head's rows ``W_r [K_r, D]`` and an
embedding's rows ``E_r [K_r, D]`` (GPT-2's K = 50257 does not split evenly; that is fine). Then

    logits_r = h @ W_r^T                        [R, K_r]   no rank ever holds [R, K]
    e        = rk.sample_embed(logits_r, E_r, group=group)
             = sum_r y_r @ E_r                  [R, D]     one collective per step of the
                                                           sample, one all-reduce of [R, D]

and a few SGD steps on a toy objective show the gradient reaching every shard. Rank 0 first checks
that the sharded call samples exactly the tokens of the unsharded call with the same seed.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist

import redge_kernels as rk
from redge_kernels import api, distributed

K, D, ROWS = 50257, 64, 32


def shard_range(k: int, world: int, rank: int) -> tuple[int, int]:
    """Contiguous columns of rank ``rank``: the first ``k % world`` ranks get one more."""
    q, r = divmod(k, world)
    start = rank * q + min(rank, r)
    return start, start + q + (rank < r)


def check_against_unsharded(h, w_full, lo, hi, group, schedule) -> None:
    """The sharded sample equals the unsharded one (same seed): tokens, values and gradients."""
    logits = h @ w_full.T
    full = logits.detach().requires_grad_()
    y_full, tok_full = api.sample("redge", full, schedule=schedule, seed=2024,
                                  backend="reference", return_index=True)
    mine = logits[:, lo:hi].detach().requires_grad_()
    y, tok = distributed.sample("redge", mine, group=group, schedule=schedule, seed=2024,
                                return_index=True)
    g = torch.randn(logits.shape, generator=torch.Generator(h.device).manual_seed(3),
                    device=h.device)
    (y_full * g).sum().backward()
    (y * g[:, lo:hi]).sum().backward()
    same = torch.tensor([torch.equal(tok, tok_full) and torch.equal(y, y_full[:, lo:hi].detach())
                         and torch.allclose(mine.grad, full.grad[:, lo:hi], atol=1e-6)],
                        dtype=torch.int32, device=h.device)
    dist.all_reduce(same, op=dist.ReduceOp.MIN, group=group)
    if dist.get_rank(group) == 0:
        print(f"sharded call == unsharded call (tokens, values, gradients) on every rank: "
              f"{bool(same.item())}; first tokens {tok[:8].tolist()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    group, rank, world = dist.group.WORLD, dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(device)
    lo, hi = shard_range(K, world, rank)
    # Every rank draws the same full parameters and keeps its rows (a real model would
    # initialise only its shard).
    gen = torch.Generator(device).manual_seed(0)
    h = torch.randn(ROWS, D, generator=gen, device=device)
    w_full = torch.randn(K, D, generator=gen, device=device) / D**0.5
    e_full = torch.randn(K, D, generator=gen, device=device)
    target = torch.randn(ROWS, D, generator=gen, device=device)
    schedule = rk.linear_schedule(3, 0.5)  # n_steps=3, t_1=0.5 (as passed to sample_embed below)
    torch.manual_seed(1234)  # every rank alike: the calls below draw their seeds from it
    check_against_unsharded(h, w_full, lo, hi, group, schedule)

    w = w_full[lo:hi].clone().requires_grad_()
    emb = e_full[lo:hi].clone().requires_grad_()
    opt = torch.optim.SGD([w, emb], lr=0.5)
    for step in range(args.steps):
        # the full sampled embedding [R, D] on every rank; y [R, K_r] is never formed
        e = rk.sample_embed(h @ w.T, emb, "redge", group=group, n_steps=3, t_1=0.5)
        loss = ((e - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        grad_norm = torch.stack([w.grad.norm() ** 2, emb.grad.norm() ** 2])
        dist.all_reduce(grad_norm, group=group)
        opt.step()
        if rank == 0:
            print(f"step {step}: loss {loss.item():.4f}, |grad W| {grad_norm[0].sqrt():.4f}, "
                  f"|grad E| {grad_norm[1].sqrt():.4f}  (rank 0 holds columns {lo}..{hi - 1})")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
