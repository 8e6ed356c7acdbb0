"""SASS of a cubin as data: instructions with their source context, basic blocks, control flow,
natural loops, and the pipe each instruction issues to (docs/GPU_MODEL.md "Pipes").

``disassemble(cubin)`` runs the triton wheel's ``nvdisasm -gi -c`` and returns a ``Program``:

* ``instrs``: ``Instr(addr, pred, opcode, operands, context)``; ``context`` is the inline chain of
  source frames, outermost first, ``((file, line), ...)``, from the line table (Triton always
  compiles with ``-lineinfo``);
* ``blocks``: basic blocks (leaders: the entry, branch targets, the instruction after a branch,
  an ``EXIT`` or a ``RET``), with successor edges (a predicated branch also falls through; calls
  fall through and their targets are recorded in ``calls``);
* ``loops``: natural loops from the back edges of the dominator tree, innermost last in nesting
  order, each with its header, latch blocks and member blocks;
* ``reachable``: blocks reached from the entry without entering a called subroutine.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import tempfile

_LOC = re.compile(r'//## File "([^"]+)", line (\d+)(?: inlined at "([^"]+)", line (\d+))?')
_INS = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*(.*?)\s*;")
_LABEL = re.compile(r"^\s*(\.L_x_\d+|[A-Za-z_$][\w$.]*):\s*$")
_TARGET = re.compile(r"`\((\.L_x_\d+|[A-Za-z_$][\w$.]*)\)")

#: Pipe of each opcode (the part before the first '.'); docs/GPU_MODEL.md lists the sources.
PIPES = {
    "fma": {"FFMA", "FADD", "FMUL", "FFMA32I", "FADD32I", "FMUL32I", "HFMA2", "HADD2", "HMUL2",
            "FSWZADD"},
    "imad": {"IMAD", "IMUL", "IMAD32I", "IMUL32I", "IDP", "IDP4A"},
    "alu": {"IADD3", "IADD", "IADD32I", "LOP3", "LOP", "LOP32I", "SHF", "SHL", "SHR", "LEA",
            "ISETP", "FSETP", "HSETP2", "PSETP", "PLOP3", "SEL", "FSEL", "FMNMX", "IMNMX", "VIMNMX",
            "IABS", "MOV", "MOV32I", "PRMT", "P2R", "R2P", "FCHK", "ICMP", "FCMP", "CSET",
            "CSETP", "VIADD", "VIADDMNMX", "BMSK", "SGXT", "LEPC", "CS2R", "S2R", "S2UR", "VOTE",
            "VOTEU", "HMNMX2", "FMNMX3", "IMNMX3"},
    "mufu": {"MUFU"},
    "conv": {"F2I", "I2F", "F2F", "FRND", "I2FP", "F2IP", "I2I", "F2FP", "POPC", "FLO", "BREV"},
    "fp64": {"DFMA", "DADD", "DMUL", "DSETP", "DMNMX"},
    "lsu": {"LDG", "STG", "LD", "ST", "LDL", "STL", "ATOM", "ATOMG", "RED", "LDGSTS", "LDGDEPBAR",
            "CCTL", "LDC"},
    "shared": {"LDS", "STS", "LDSM", "ATOMS", "SHFL"},
    "barrier": {"BAR", "BARRIER", "MEMBAR", "DEPBAR", "ERRBAR", "WARPSYNC", "ARRIVES", "SYNCS"},
    "control": {"BRA", "BRX", "JMP", "JMX", "CALL", "RET", "EXIT", "BSSY", "BSYNC", "BREAK",
                "NOP", "YIELD", "KILL", "BPT", "NANOSLEEP", "ACQBULK", "ELECT", "PMTRIG", "WARPGROUP"},
}
_PIPE_OF = {op: pipe for pipe, ops in PIPES.items() for op in ops}


def pipe_of(opcode: str) -> str:
    """Pipe of a SASS opcode (``"FFMA.FTZ"`` -> ``"fma"``); uniform-datapath instructions
    (``U*``, ``R2UR``) -> ``"uniform"``; unknown opcodes -> ``"other"``."""
    base = opcode.split(".", 1)[0]
    if base in _PIPE_OF:
        return _PIPE_OF[base]
    if base.startswith("U") or base in ("R2UR", "S2UR", "REDUX"):
        return "uniform"
    return "other"


@dataclasses.dataclass
class Instr:
    addr: int
    pred: str
    opcode: str
    operands: str
    context: tuple  # ((file, line), ...), outermost frame first

    @property
    def base(self) -> str:
        return self.opcode.split(".", 1)[0]

    @property
    def pipe(self) -> str:
        return pipe_of(self.opcode)


@dataclasses.dataclass
class Block:
    index: int
    start: int  # index of the first instruction
    end: int  # one past the last
    succs: list
    calls: list


@dataclasses.dataclass
class Loop:
    header: int
    latches: list
    blocks: set
    parent: int | None = None  # index into Program.loops
    depth: int = 1


@dataclasses.dataclass
class Program:
    instrs: list
    blocks: list
    loops: list
    reachable: set

    def block_of(self) -> list[int]:
        """Block index of every instruction."""
        out = [0] * len(self.instrs)
        for b in self.blocks:
            for i in range(b.start, b.end):
                out[i] = b.index
        return out

    def innermost_loop(self) -> list[int | None]:
        """Index of the innermost loop holding each block (None outside loops)."""
        best: list[int | None] = [None] * len(self.blocks)
        for li, lp in enumerate(self.loops):
            for b in lp.blocks:
                if best[b] is None or self.loops[best[b]].depth < lp.depth:
                    best[b] = li
        return best


def parse(text: str) -> list[Instr]:
    """Instructions of ``nvdisasm -gi`` output (labels are returned as ``Instr`` with opcode
    ``"LABEL"`` and the name in ``operands``)."""
    out: list[Instr] = []
    group: list[tuple] = []  # consecutive //## lines, innermost first
    context: tuple = ()
    last_was_loc = False
    for line in text.splitlines():
        m = _LOC.search(line)
        if m:
            if not last_was_loc:
                group = []
            group.append(m.groups())
            last_was_loc = True
            continue
        if last_was_loc and group:
            frames = [(group[0][0], int(group[0][1]))]
            for f, ln, at_f, at_ln in group:
                if at_f is not None:
                    frames.append((at_f, int(at_ln)))
            context = tuple(reversed(frames))
        last_was_loc = False
        lab = _LABEL.match(line)
        if lab:
            out.append(Instr(-1, "", "LABEL", lab.group(1), context))
            continue
        m = _INS.search(line)
        if m:
            out.append(Instr(int(m.group(1), 16), (m.group(2) or "").strip(), m.group(3),
                             m.group(4), context))
    return out


def _split_blocks(items: list[Instr]):
    """Drop the label pseudo-instructions and cut the rest into blocks with edges."""
    instrs, label_at, leaders = [], {}, {0}
    for it in items:
        if it.opcode == "LABEL":
            label_at[it.operands] = len(instrs)
            leaders.add(len(instrs))
        else:
            instrs.append(it)
    for i, it in enumerate(instrs):
        if it.base in ("BRA", "BRX", "JMP", "JMX", "EXIT", "RET", "BREAK", "KILL"):
            leaders.add(i + 1)
    starts = sorted(s for s in leaders if s < len(instrs))
    block_at = {s: bi for bi, s in enumerate(starts)}
    blocks = []
    for bi, s in enumerate(starts):
        e = starts[bi + 1] if bi + 1 < len(starts) else len(instrs)
        last = instrs[e - 1]
        succs, calls = [], []
        for it in instrs[s:e]:
            if it.base == "CALL":
                t = _TARGET.search(it.operands)
                if t and t.group(1) in label_at and label_at[t.group(1)] in block_at:
                    calls.append(block_at[label_at[t.group(1)]])
        falls = e < len(instrs)
        if last.base in ("BRA", "JMP"):
            t = _TARGET.search(last.operands)
            if t and t.group(1) in label_at and label_at[t.group(1)] in block_at:
                succs.append(block_at[label_at[t.group(1)]])
            falls = falls and bool(last.pred)
        elif last.base in ("EXIT", "RET", "BRX", "JMX", "KILL", "BREAK"):
            falls = falls and bool(last.pred)
        if falls and e in block_at:
            succs.append(block_at[e])
        blocks.append(Block(bi, s, e, sorted(set(succs)), calls))
    return instrs, blocks


def _reach(blocks, start: int) -> set:
    seen, todo = {start}, [start]
    while todo:
        for s in blocks[todo.pop()].succs:
            if s not in seen:
                seen.add(s)
                todo.append(s)
    return seen


def _dominators(blocks, nodes: set, entry: int) -> dict:
    preds = {b: [p for p in nodes if b in blocks[p].succs] for b in nodes}
    dom = {b: set(nodes) for b in nodes}
    dom[entry] = {entry}
    changed = True
    while changed:
        changed = False
        for b in sorted(nodes):
            if b == entry:
                continue
            ps = [dom[p] for p in preds[b]]
            new = ({b} | set.intersection(*ps)) if ps else {b}
            if new != dom[b]:
                dom[b], changed = new, True
    return dom


def find_loops(blocks, nodes: set, entry: int) -> list[Loop]:
    """Natural loops of the subgraph ``nodes`` (back edge u -> h with h dominating u); loops with
    the same header are merged; nesting by containment."""
    dom = _dominators(blocks, nodes, entry)
    preds = {b: [p for p in nodes if b in blocks[p].succs] for b in nodes}
    by_header: dict[int, Loop] = {}
    for u in sorted(nodes):
        for h in blocks[u].succs:
            if h in nodes and h in dom[u]:
                body, todo = {h, u}, [u]
                while todo:
                    x = todo.pop()
                    if x == h:
                        continue
                    for p in preds[x]:
                        if p not in body:
                            body.add(p)
                            todo.append(p)
                lp = by_header.setdefault(h, Loop(h, [], set()))
                lp.latches.append(u)
                lp.blocks |= body
    loops = sorted(by_header.values(), key=lambda lp: -len(lp.blocks))
    for i, lp in enumerate(loops):
        for j in range(i - 1, -1, -1):
            if lp.blocks <= loops[j].blocks and lp is not loops[j]:
                lp.parent = j
                lp.depth = loops[j].depth + 1
                break
    return loops


def build(items: list[Instr]) -> Program:
    instrs, blocks = _split_blocks(items)
    main = _reach(blocks, 0) if blocks else set()
    loops = find_loops(blocks, main, 0) if blocks else []
    # subroutines (reached through CALL only) get their own loops, same nesting rules
    seen = set(main)
    for b in sorted(main):
        for c in blocks[b].calls:
            if c not in seen:
                sub = _reach(blocks, c) - seen
                seen |= sub
                loops += find_loops(blocks, sub, c)
    return Program(instrs, blocks, loops, main)


def disassemble(cubin: bytes) -> Program:
    """``Program`` of the (single-kernel) cubin, via the triton wheel's ``nvdisasm``."""
    from bench.kernel_compile import nvidia_tool
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([nvidia_tool("nvdisasm"), "-gi", "-c", f.name],
                              capture_output=True, text=True, check=True).stdout
    return build(parse(text))
