"""Instructions executed per program of a compiled kernel, by pipe: the SASS (``bench.sass``)
weighted by how often the source construct each instruction comes from runs in one program
(``bench.kernel_trace``). Method and caveats: docs/GPU_MODEL.md "Counting".

Weight of an instruction (executions per program, per warp):

* in a subroutine (reached through ``CALL`` only: libdevice slow paths) or in a SASS loop that
  no source ``for`` matches (libdevice's argument-reduction loops): 0, reported apart;
* otherwise by its innermost source construct ``c`` (``SourceIndex.construct``; for a predicated
  instruction the innermost ``for``, as it issues whether or not its guard holds; its global
  memory bytes, though, only in the share of those issues in which its ``if`` / ``else`` body
  runs, since a predicated-off access moves nothing): top level 1; ``if`` / ``else`` body: the
  body's executions; ``for`` body or header: inside the SASS loop matched to ``c`` the loop's iterations divided by its unroll factor ``u``, inside
  another SASS loop matched to ``c`` (ptxas' remainder loop of an unrolled loop) 0, outside every
  SASS loop of ``c``: the loop's entries for its header line (guards, trip set-up, code ptxas
  scheduled there) and for a loop that is not unrolled (hoisted code; a loop unrolled
  completely), 0 for body lines of an unrolled loop (peeled copies: their iterations are counted
  at the main loop's cost).

A SASS loop is matched to the source ``for`` whose header line its latch branch (else most of its
own loop-control instructions) carries; ``u`` is the ratio of the main loop's body instructions of ``c``
(loop control and branches left out) to the smallest copy's, when ptxas emitted several loops for
one ``for``.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter, defaultdict

from bench.kernel_trace import SourceIndex, Trace
from bench.sass import Program

_WIDTH = re.compile(r"\.(128|64|32|U16|S16|U8|S8)\b")


def access_bytes(opcode: str) -> int:
    """Bytes per thread of a load / store opcode (``LDG.E.128`` -> 16; default 4)."""
    m = _WIDTH.search(opcode)
    if not m:
        return 4
    return {"128": 16, "64": 8, "32": 4, "U16": 2, "S16": 2, "U8": 1, "S8": 1}[m.group(1)]


@dataclasses.dataclass
class Counts:
    """Warp-instructions executed per program (``by_pipe``, ``by_opcode``), global memory bytes
    per program as addressed by all 32 lanes (``ldg_bytes`` / ``stg_bytes``), and diagnostics."""
    by_pipe: Counter
    by_opcode: Counter
    ldg_bytes: float
    stg_bytes: float
    loops: list  # (source for-key label, SASS instructions, unroll, weight)
    excluded: Counter  # "subroutine" / "library loop" -> static instruction count
    static_instrs: int

    @property
    def total(self) -> float:
        return float(sum(self.by_pipe.values()))


def _label(key) -> str:
    call_sites, (path, line, kind) = key
    name = path.rsplit("/", 1)[-1]
    via = "".join(f"{p.rsplit('/', 1)[-1]}:{ln}>" for p, ln in call_sites)
    return f"{via}{name}:{line}"


def _match_loops(prog: Program, index: SourceIndex, inner: list) -> list:
    """Source ``for`` key of each SASS loop (None when no source loop matches)."""
    keys = []
    for li, lp in enumerate(prog.loops):
        votes: Counter = Counter()
        for b in lp.latches:
            k = index.loop_control(prog.instrs[prog.blocks[b].end - 1].context)
            if k is not None:
                votes[k] += 1000
        for b in lp.blocks:
            if inner[b] != li:
                continue
            for ins in prog.instrs[prog.blocks[b].start:prog.blocks[b].end]:
                k = index.loop_control(ins.context)
                if k is not None:
                    votes[k] += 1
        keys.append(votes.most_common(1)[0][0] if votes else None)
    return keys


def _ancestors(prog: Program, li):
    while li is not None:
        yield li
        li = prog.loops[li].parent


def count(prog: Program, trace: Trace, index: SourceIndex) -> Counts:
    """Executed warp-instructions per program (see the module docstring)."""
    if not any(index.kernel_frames(ins.context) for ins in prog.instrs):
        # e.g. a Triton cache entry compiled from another checkout of the same source
        raise ValueError("the SASS line info names no source file under the kernel roots "
                         f"{sorted(index.roots)}: nothing to weigh the instructions by")
    block_of = prog.block_of()
    inner = prog.innermost_loop()
    loop_key = _match_loops(prog, index, inner)
    # a predicated instruction issues whether or not its guard holds: an if-converted ``if``
    # body costs what its enclosing loop costs
    construct = [index.construct(ins.context, loops_only=bool(ins.pred)) for ins in prog.instrs]
    # instructions of each source for-key per matched SASS loop -> main loop and unroll factor
    # (the body's own work: not its loop control, which differs between unrolled copies)
    per_loop: dict = defaultdict(Counter)
    for i, c in enumerate(construct):
        ins = prog.instrs[i]
        if ins.pipe == "control" or index.loop_control(ins.context) is not None:
            continue
        li = inner[block_of[i]]
        for a in _ancestors(prog, li):
            if loop_key[a] is not None and c is not None and c == loop_key[a]:
                per_loop[c][a] += 1
    main, unroll = {}, {}
    for key, n_by_loop in per_loop.items():
        (a, n_main), = n_by_loop.most_common(1)
        main[key] = a
        n_min = min(n_by_loop.values())
        unroll[key] = max(1, round(n_main / n_min)) if len(n_by_loop) > 1 else 1
    matched = defaultdict(set)
    for a, k in enumerate(loop_key):
        if k is not None:
            matched[k].add(a)
    by_pipe: Counter = Counter()
    by_op: Counter = Counter()
    excluded: Counter = Counter()
    ldg = stg = 0.0
    weight_cache: dict = {}
    for i, ins in enumerate(prog.instrs):
        b = block_of[i]
        li = inner[b]
        if b not in prog.reachable:
            excluded["subroutine"] += 1
            continue
        if li is not None and loop_key[li] is None:
            excluded["library loop"] += 1
            continue
        c = construct[i]
        header = index.loop_control(ins.context) is not None
        ck = (c, li, header)
        if ck not in weight_cache:
            weight_cache[ck] = _weight(prog, trace, index, c, li, matched, main, unroll, header)
        w = weight_cache[ck]
        if w == 0:
            continue
        by_pipe[ins.pipe] += w
        by_op[ins.base] += w
        if ins.base in _LOADS + _STORES:
            # a predicated-off access issues but moves nothing: bytes by its guard's share
            moved = w * 32 * access_bytes(ins.opcode) * _guard_share(trace, index, ins, c)
            if ins.base in _LOADS:
                ldg += moved
            else:
                stg += moved
    loops = []
    for key, a in main.items():
        it = trace.iterations(key, index)
        loops.append((_label(key), sum(per_loop[key].values()), unroll[key], it))
    return Counts(by_pipe, by_op, ldg, stg, sorted(loops), excluded, len(prog.instrs))


_LOADS = ("LDG", "LD")
_STORES = ("STG", "ST", "RED", "ATOMG", "ATOM")


def _guard_share(trace, index, ins, c) -> float:
    """Share of a memory instruction's issues that move data: 1 unless it is predicated and its
    line info names a ``tl.load`` / ``tl.store`` statement inside an ``if`` / ``else`` body (an
    if-converted guard; ``c`` its enclosing ``for`` or None), then the body's executions over
    those of the ``for`` body (or the program) around it, when the body ran on some of those
    issues but not all. A predicate may also be a mask, and ptxas sometimes gives an access the
    line of a use inside another ``if``, or of the same access in a constexpr branch that was not
    compiled (whose body never runs): such accesses keep share 1 (an overcount at worst)."""
    if not ins.pred or not index.names_access(ins.context,
                                              "load" if ins.base in _LOADS else "store"):
        return 1.0  # unpredicated, or line info naming a use: counted on every issue
    guard = index.construct(ins.context)
    if guard is None or guard == c or guard[1][2] == "for":
        return 1.0
    runs = trace.iterations(guard, index)
    around = 1.0 if c is None else trace.iterations(c, index)
    # a body that ran on every issue or on none (a constexpr branch, or line info naming the
    # access of a branch that was not compiled) says nothing about the predicate: full weight
    return runs / around if 0 < runs < around else 1.0


def _weight(prog, trace, index, c, li, matched, main, unroll, header) -> float:
    if c is None:
        return 1.0
    _, (_, _, kind) = c
    if kind != "for":
        return float(trace.iterations(c, index))
    loops_of_c = matched.get(c, set())
    if not loops_of_c:
        return float(trace.entries(c, index))
    chain = set(_ancestors(prog, li))
    if main.get(c) in chain:
        return trace.iterations(c, index) / unroll[c]
    if chain & loops_of_c or (unroll.get(c, 1) > 1 and not header):
        # remainder loop or peeled copies of an unrolled loop: their iterations are counted at
        # the main loop's cost per iteration
        return 0.0
    return float(trace.entries(c, index))  # code hoisted out of the loop
