"""The CPU output pool (csrc/output_pool.cpp): large outputs of the fused ops reuse freed buffers.

Checked here: results are bitwise those of the unpooled path (every element is written, no stale
data from a previous call), reuse really happens, the cap evicts and 0 turns the pool off, and a
pooled tensor behaves like any other CPU tensor (resize, clone, pickling, freeing from another
thread)."""

import io
import threading

import pytest
import torch

import redge_kernels as rk
from redge_kernels import _cpu_backend

from cpu_cases import _compare

pytestmark = pytest.mark.skipif(not _cpu_backend.available(), reason="C++ extension not built")

R, K = 64, 16384  # 4 MiB of fp32: the smallest pooled size
MiB = 1 << 20


def _stats():
    held, buffers, hits, misses, cap = torch.ops.redge_kernels_cpu._pool_stats()
    return {"held": held, "buffers": buffers, "hits": hits, "misses": misses, "cap": cap}


@pytest.fixture
def pool():
    """A clean pool with a 1 GiB cap; the previous cap is restored afterwards."""
    old = torch.ops.redge_kernels_cpu._pool_set_cap(1 << 30)
    torch.ops.redge_kernels_cpu._pool_clear()
    yield
    torch.ops.redge_kernels_cpu._pool_clear()
    torch.ops.redge_kernels_cpu._pool_set_cap(old)


def _fwd_bwd(logits, g, hard, method="redge", seed=7):
    x = logits.detach().clone().requires_grad_()
    y = rk.sample(method, x, hard=hard, seed=seed, backend="cpu",
                  schedule=rk.linear_schedule(5, 0.5) if method.startswith("redge") else None)
    y.backward(g)
    return y.detach(), x.grad


@pytest.mark.parametrize("method", ["redge", "gumbel"])
def test_pooled_outputs_equal_unpooled(pool, method):
    torch.manual_seed(0)
    logits = torch.randn(R, K)
    g = torch.randn(R, K)
    torch.ops.redge_kernels_cpu._pool_set_cap(0)
    ref = {hard: _fwd_bwd(logits, g, hard, method) for hard in (False, True)}
    torch.ops.redge_kernels_cpu._pool_set_cap(1 << 30)
    # Alternate soft and hard calls so that pooled buffers previously held other values.
    for hard in (False, True, False, True):
        y, grad = _fwd_bwd(logits, g, hard, method)
        assert torch.equal(y, ref[hard][0])
        assert torch.equal(grad, ref[hard][1])
    assert _stats()["hits"] >= 4


def test_pooled_shape_matches_reference(pool):
    torch.manual_seed(1)
    _compare("redge", torch.randn(R, K), seed=11)
    _compare("redge", torch.randn(R, K), seed=12)  # second call runs on reused buffers
    assert _stats()["hits"] > 0


def test_freed_output_is_reused(pool):
    x = torch.randn(R, K)
    y = rk.redge(x, backend="cpu", seed=3)
    ptr = y.data_ptr()
    before = _stats()
    del y
    after_free = _stats()
    assert after_free["buffers"] == before["buffers"] + 1
    assert after_free["held"] == before["held"] + 4 * MiB
    y2 = rk.redge(x, backend="cpu", seed=3)
    assert y2.data_ptr() == ptr
    assert _stats()["hits"] == before["hits"] + 1


def test_small_outputs_bypass_the_pool(pool):
    before = _stats()
    y = rk.redge(torch.randn(8, 1000), backend="cpu", seed=1)
    del y
    assert _stats() == before


def test_cap_evicts_oldest_and_zero_disables(pool):
    torch.ops.redge_kernels_cpu._pool_set_cap(4 * MiB)
    x = torch.randn(R, K)
    a = rk.redge(x, backend="cpu", seed=1)
    b = rk.redge(x, backend="cpu", seed=2)
    pa, pb = a.data_ptr(), b.data_ptr()
    del a, b  # a pooled, then b pooled and a evicted (cap: one buffer)
    s = _stats()
    assert (s["buffers"], s["held"]) == (1, 4 * MiB)
    assert rk.redge(x, backend="cpu", seed=3).data_ptr() == pb
    assert pa != pb
    assert torch.ops.redge_kernels_cpu._pool_set_cap(0) == 4 * MiB
    assert _stats()["held"] == 0
    hits = _stats()["hits"]
    y = rk.redge(x, backend="cpu", seed=4)
    del y
    s = _stats()
    assert (s["held"], s["buffers"], s["hits"]) == (0, 0, hits)


def test_buffer_larger_than_cap_is_not_kept(pool):
    torch.ops.redge_kernels_cpu._pool_set_cap(4 * MiB)
    y = rk.redge(torch.randn(2 * R, K), backend="cpu", seed=1)  # 8 MiB
    del y
    assert _stats()["held"] == 0


def test_negative_cap_is_an_error(pool):
    with pytest.raises(RuntimeError, match="cap must be >= 0"):
        torch.ops.redge_kernels_cpu._pool_set_cap(-1)


def test_pooled_tensor_behaves_like_a_tensor(pool):
    x = torch.randn(R, K)
    y = rk.redge(x, backend="cpu", hard=False, seed=5)
    expected = y.clone()
    buf = io.BytesIO()
    torch.save(y, buf)
    buf.seek(0)
    assert torch.equal(torch.load(buf), expected)
    y.resize_(R + 10, K)  # grows through the pool's allocator, keeps the old values
    assert torch.equal(y[:R], expected)
    y.mul_(2)
    assert torch.equal(y[:R], 2 * expected)
    y.resize_(0)
    del y
    assert _stats()["buffers"] >= 1


def test_freed_from_another_thread(pool):
    x = torch.randn(R, K)
    outs = [rk.redge(x, backend="cpu", seed=s) for s in range(3)]
    held = _stats()["held"]
    t = threading.Thread(target=outs.clear)
    t.start()
    t.join()
    assert _stats()["held"] == held + 3 * 4 * MiB


def test_disabled_pool_bypasses_but_keeps_buffers(pool):
    x = torch.randn(R, K)
    y = rk.redge(x, backend="cpu", seed=1)
    ptr = y.data_ptr()
    del y
    held = _stats()["held"]
    assert torch.ops.redge_kernels_cpu._pool_set_enabled(False) is True
    try:
        hits = _stats()["hits"]
        y = rk.redge(x, backend="cpu", seed=2)
        assert y.data_ptr() != ptr
        del y
        assert _stats()["hits"] == hits
        assert _stats()["held"] == held  # kept, and the bypassing output was not added
    finally:
        assert torch.ops.redge_kernels_cpu._pool_set_enabled(True) is False
    assert rk.redge(x, backend="cpu", seed=3).data_ptr() == ptr


@pytest.mark.parametrize("method", ["redge", "redge_cov", "st"])
def test_clear_also_resets_kept_scratch(pool, method):
    # pool_clear makes every thread drop its kept kernel scratch; the next call starts from fresh
    # (NaN-filled) scratch and must give the same bits (nothing read before it is written).
    torch.manual_seed(2)
    logits = torch.randn(16, 3000)
    g = torch.randn(16, 3000)
    first = _fwd_bwd(logits, g, hard=False, method=method)
    torch.ops.redge_kernels_cpu._pool_clear()
    again = _fwd_bwd(logits, g, hard=False, method=method)
    assert torch.equal(first[0], again[0])
    assert torch.equal(first[1], again[1])
