"""Vocabulary-parallel estimators on CPU over gloo (docs/SPEC.md "Vocabulary-parallel").

Each world size (2 and 4 processes) is one spawn of ``tests/dist_cases.py`` workers that rendezvous
through a file in a temporary directory and run every case of ``dist_cases.cases`` (spawning costs
seconds, so the cases are batched); each test below reads one case's verdict from every rank.
The spawn is bounded in time: on a timeout its processes are killed and every case fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from dist_cases import cases

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

ROOT = Path(__file__).resolve().parents[1]
SPAWN_TIMEOUT_S = 150
_RESULTS: dict = {}


def _spawn(world: int, tmp: Path) -> list[dict]:
    """Run the workers of one world size; ``{name: [record per rank]}``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    if sys.platform.startswith("linux"):  # gloo's sockets on the loopback device (127.0.0.1)
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tests" / "dist_cases.py"), str(r),
                               str(world), str(tmp / "rendezvous"), str(tmp / f"rank{r}.json")],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
             for r in range(world)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=SPAWN_TIMEOUT_S)[0].decode(errors="replace"))
    except subprocess.TimeoutExpired:
        pytest.fail(f"{world} workers did not finish in {SPAWN_TIMEOUT_S} s (a hang)")
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    by_case: dict = {}
    for r, p in enumerate(procs):
        out = tmp / f"rank{r}.json"
        if p.returncode != 0 or not out.exists():
            pytest.fail(f"rank {r} of {world} exited with {p.returncode}:\n{logs[r][-3000:]}")
        for rec in json.loads(out.read_text()):
            by_case.setdefault(rec["name"], []).append(rec)
    return by_case


def _results(world: int, tmp_path_factory) -> dict:
    if world not in _RESULTS:
        _RESULTS[world] = _spawn(world, tmp_path_factory.mktemp(f"dist{world}"))
    return _RESULTS[world]


@pytest.mark.parametrize("world,name", [(w, c.name) for w in (2, 4) for c in cases(w)])
def test_sharded_call_matches_unsharded(world, name, tmp_path_factory):
    """Same indices as the unsharded reference call with the same seed, values and gradients to
    fp32 (fp64, bf16) tolerance, the expected number of collectives, the row contract, and for the
    ``error-*`` cases a clear error on every rank (the next case then runs on the same group)."""
    records = _results(world, tmp_path_factory).get(name)
    assert records is not None and len(records) == world, f"{name}: not run on every rank"
    failed = [f"rank {r}: {rec['msg']}" for r, rec in enumerate(records) if not rec["ok"]]
    assert not failed, "\n".join(failed)


def test_argument_errors_without_a_group():
    """Errors that need no collective: no group and no DTensor, a group of the wrong type (also
    through ``sample_embed`` and ``SamplerConfig.embed``)."""
    import torch

    from redge_kernels import distributed
    logits = torch.zeros(2, 5)
    assert distributed.is_sharded(logits, object()) and not distributed.is_sharded(logits)
    with pytest.raises(ValueError, match="group is required"):
        distributed.sample("st", logits)
    with pytest.raises(TypeError, match="group must be a torch.distributed ProcessGroup"):
        distributed.sample("st", logits, group="world")
    import redge_kernels as rk
    with pytest.raises(TypeError, match="group must be a torch.distributed ProcessGroup"):
        rk.sample_embed(logits, torch.zeros(5, 3), "st", group="world")
    with pytest.raises(TypeError, match="group must be a torch.distributed ProcessGroup"):
        rk.SamplerConfig("redge").embed(logits, torch.zeros(5, 3), group="world")
