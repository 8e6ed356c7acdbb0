"""How often each source construct of a kernel runs in one program, from the kernel's own
structure: the kernel is run by Triton's interpreter for its first program only (``tl.num_programs``
still reports the real grid) under a line tracer, and every entry into a statement of the kernel
sources is counted in its inline context (the chain of call sites, outermost first).

Constructs (``SourceIndex``): a ``for`` loop (header line), the body of an ``if`` or its ``else``.
``Trace.iterations(key)`` / ``entries(key)`` / ``hits(key)`` answer per program, where a key is
``(call_sites, (file, header_line, kind))`` as built by ``SourceIndex.construct``; the SASS side
(``bench.gpu_model``) builds the same keys from the line table of the machine code.

Kernel sources are the Python files under the folders of the launched kernels' sources, outside
Triton's own package (the interpreter replaces ``tl.*`` library functions, so their lines never run
as Python).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import os
import sys
from collections import Counter


@functools.lru_cache(maxsize=None)
def _triton_dir() -> str:
    import triton
    return os.path.dirname(os.path.abspath(triton.__file__))


def is_kernel_file(path: str, roots) -> bool:
    """A Python source of kernel code: a real file under one of ``roots`` (the folders of the
    launched kernels' sources), outside Triton's package."""
    path = os.path.abspath(path)
    return path.endswith(".py") and not path.startswith(_triton_dir() + os.sep) and \
        any(path.startswith(r + os.sep) for r in roots) and os.path.isfile(path)


def kernel_root(fn) -> str:
    """Folder of a kernel's source (``fn``: JITFunction, InterpretedFunction or function)."""
    f = getattr(fn, "fn", fn)
    return os.path.dirname(os.path.abspath(f.__code__.co_filename))


@functools.lru_cache(maxsize=None)
def while_spans(path: str) -> tuple:
    """``(first, last)`` lines of every ``while`` loop of a source file (their trip counts depend
    on the data)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    return tuple((n.lineno, n.end_lineno) for n in ast.walk(tree) if isinstance(n, ast.While))


@dataclasses.dataclass
class _Construct:
    kind: str  # "for", "if", "else"
    header: int  # line of the for / if statement
    first: int  # first line of the body (of the orelse for "else")
    lo: int  # body line range, inclusive
    hi: int


class _FileIndex:
    """Statement starts and constructs of one source file."""

    def __init__(self, path: str):
        with open(path) as f:
            tree = ast.parse(f.read())
        self.stmt_of: dict[int, int] = {}  # line -> start line of the innermost statement
        self.constructs: list[_Construct] = []
        self.for_headers: set[int] = set()
        self.static_fors: list = []  # (header, lo, hi) of ``tl.static_range`` loops
        #: lines of ``tl.load`` / ``tl.store`` calls (statement starts come later)
        self.access_lines: dict[str, set] = {"load": set(), "store": set()}
        spans = []
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in self.access_lines
                    and getattr(node.func.value, "id", None) == "tl"):
                self.access_lines[node.func.attr].add(node.lineno)
            if isinstance(node, ast.stmt):
                end = node.end_lineno or node.lineno
                body = getattr(node, "body", None)
                if isinstance(body, list) and body and not isinstance(node, ast.ClassDef):
                    end = body[0].lineno - 1  # a compound statement's header only
                spans.append((node.lineno, max(end, node.lineno)))
            if (isinstance(node, ast.For) and isinstance(node.iter, ast.Call)
                    and getattr(node.iter.func, "attr", None) == "static_range"):
                self.static_fors.append((node.lineno, node.body[0].lineno, node.end_lineno))
            if isinstance(node, (ast.For, ast.While)):
                self.for_headers.add(node.lineno)
                self.constructs.append(_Construct("for", node.lineno, node.body[0].lineno,
                                                  node.lineno, node.end_lineno))
            elif isinstance(node, ast.If):
                last = node.body[-1].end_lineno
                self.constructs.append(_Construct("if", node.lineno, node.body[0].lineno,
                                                  node.body[0].lineno, last))
                if node.orelse:
                    self.constructs.append(_Construct("else", node.lineno,
                                                      node.orelse[0].lineno,
                                                      node.orelse[0].lineno,
                                                      node.orelse[-1].end_lineno))
        for lo, hi in sorted(spans, key=lambda s: s[1] - s[0], reverse=True):
            for ln in range(lo, hi + 1):
                self.stmt_of[ln] = lo  # smaller spans overwrite: innermost statement wins
        self.first_lines = {c.first: c for c in self.constructs}
        self.access_stmts = {kind: {self.stmt_of.get(ln, ln) for ln in lines}
                             for kind, lines in self.access_lines.items()}
        #: statements whose entries the counts need: loop headers, first statements of bodies
        self.counted = self.for_headers | {self.stmt_of.get(c.first, c.first)
                                           for c in self.constructs}

    def innermost(self, line: int, loops_only: bool = False) -> _Construct | None:
        best = None
        for c in self.constructs:
            if loops_only and c.kind != "for":
                continue
            if c.lo <= line <= c.hi and (best is None or c.hi - c.lo < best.hi - best.lo):
                best = c
        return best


class SourceIndex:
    """Maps a source context (outermost frame first) to its innermost counted construct."""

    def __init__(self, roots=()):
        self.roots = {os.path.abspath(r) for r in roots}
        self._files: dict[str, _FileIndex | None] = {}

    def file(self, path: str) -> _FileIndex | None:
        if path not in self._files:
            self._files[path] = _FileIndex(path) if is_kernel_file(path, self.roots) else None
        return self._files[path]

    def add_root(self, root: str):
        root = os.path.abspath(root)
        if root not in self.roots:
            self.roots.add(root)
            self._files = {p: f for p, f in self._files.items() if f is not None}

    def stmt(self, path: str, line: int) -> tuple:
        fi = self.file(path)
        return (path, fi.stmt_of.get(line, line) if fi else line)

    def kernel_frames(self, context) -> tuple:
        """The kernel-source frames of a context, each line normalised to its statement."""
        return tuple(self.stmt(f, ln) for f, ln in context if self.file(f) is not None)

    def construct(self, context, loops_only: bool = False):
        """``(call_sites, (file, header, kind))`` of the innermost ``for`` / ``if`` / ``else``
        (``for`` only with ``loops_only``) holding the context's innermost kernel frame (a ``for``
        header line belongs to its loop), looking outwards through the call sites; None at the
        top level of the kernel."""
        frames = self.kernel_frames(context)
        for i in range(len(frames) - 1, -1, -1):
            path, line = frames[i]
            c = self.file(path).innermost(line, loops_only)
            if c is not None:
                return frames[:i], (path, c.header, c.kind)
        return None

    def names_access(self, context, kind: str) -> bool:
        """Whether the context's innermost kernel frame is a statement holding a ``tl.load``
        (``kind`` "load") or ``tl.store`` ("store") call: the line info of an access names its
        own statement, not one of its uses, whose construct may be a different ``if``."""
        frames = self.kernel_frames(context)
        if not frames:
            return False
        path, line = frames[-1]
        return line in self.file(path).access_stmts[kind]

    def loop_control(self, context):
        """The key of the ``for`` whose header the context's innermost kernel frame is on."""
        frames = self.kernel_frames(context)
        if not frames:
            return None
        path, line = frames[-1]
        if line in self.file(path).for_headers:
            return frames[:-1], (path, line, "for")
        return None


@dataclasses.dataclass
class Trace:
    """Statement entries per program, keyed by (call_sites, (file, stmt_line)), for the loop
    headers and the first statements of loop and ``if`` bodies."""
    counts: Counter

    def _n(self, key, line) -> int:
        call_sites, (path, _, _) = key
        return self.counts.get((call_sites, (path, line)), 0)

    def copies(self, key, index: SourceIndex) -> float:
        """Unrolled copies of a construct: the product of the trip counts of the
        ``tl.static_range`` loops whose bodies hold it (in its file or at its call sites), whose
        bodies the compiler writes out once per iteration; 1 outside them."""
        call_sites, (path, header, _) = key
        frames = tuple(call_sites) + ((path, header),)
        n = 1.0
        for i, (fp, line) in enumerate(frames):
            ff = index.file(fp)
            for h, lo, hi in (ff.static_fors if ff else ()):
                if lo <= line <= hi:
                    skey = (tuple(frames[:i]), (fp, h, "for"))
                    it = self._n(skey, ff.stmt_of.get(lo, lo))
                    ent = max(self._n(skey, h) - it, 1)
                    n *= max(it / ent, 1.0)
        return n

    def iterations(self, key, index: SourceIndex) -> float:
        """Body executions of a ``for`` key, or executions of an ``if`` / ``else`` body, per
        unrolled copy (``copies``): each copy in the SASS carries its share."""
        _, (path, header, kind) = key
        fi = index.file(path)
        c = next(c for c in fi.constructs if c.header == header and c.kind == kind)
        return self._n(key, fi.stmt_of.get(c.first, c.first)) / self.copies(key, index)

    def entries(self, key, index: SourceIndex) -> float:
        """Times a ``for`` loop was entered (header entries minus iterations), per unrolled copy."""
        _, (path, header, _) = key
        return max(self._n(key, header) / self.copies(key, index)
                   - self.iterations(key, index), 0)


class _StopGrid(Exception):
    pass


class _Tracer:
    """``sys.settrace`` hook counting statement entries in kernel sources, in the frames of the
    kernel function ``entry`` (its ``(file, name)``) and the functions it calls."""

    def __init__(self, index: SourceIndex, entry: tuple):
        self.index = index
        self.entry = entry
        self.counts: Counter = Counter()
        self.last: dict[int, tuple] = {}

    def __call__(self, frame, event, arg):
        if event == "call" and self.index.file(frame.f_code.co_filename) is not None:
            return self.local
        return None

    def local(self, frame, event, arg):
        if event == "line":
            here = self.index.stmt(frame.f_code.co_filename, frame.f_lineno)
            if self.last.get(id(frame)) != here:
                self.last[id(frame)] = here
                if here[1] not in self.index.file(here[0]).counted:
                    return self.local
                callers = []
                f = frame
                while f is not None and (f.f_code.co_filename, f.f_code.co_name) != self.entry:
                    f = f.f_back
                    if f is not None and self.index.file(f.f_code.co_filename) is not None:
                        callers.append(self.index.stmt(f.f_code.co_filename, f.f_lineno))
                if f is not None:  # inside the kernel
                    self.counts[(tuple(reversed(callers)), here)] += 1
        elif event == "return":
            self.last.pop(id(frame), None)
        return self.local


def _first_program_only():
    """Patch the interpreter so that a launch runs its program (0, 0, 0) only."""
    from triton.runtime import interpreter
    builder = interpreter.interpreter_builder
    original = builder.set_grid_idx

    def set_grid_idx(x, y, z):
        if (x, y, z) != (0, 0, 0):
            raise _StopGrid()
        original(x, y, z)

    builder.set_grid_idx = set_grid_idx
    return lambda: setattr(builder, "set_grid_idx", original)


class _NoScope:
    def restore(self):
        pass


def _patch_once(interpreter):
    """Make the interpreter patch ``triton.language`` once per launch: a device-function call
    re-patches the modules the launch already patched (and never restores them), which costs
    ``inspect.getmembers`` of the language modules per call and changes nothing."""
    import triton.language as tl
    original = interpreter._patch_lang
    active: set = set()

    def patch(fn):
        langs = {id(v) for v in fn.__globals__.values() if v is tl or v is tl.core}
        if active and langs <= active:
            return _NoScope()
        active.update(langs)
        return original(fn)

    interpreter._patch_lang = patch

    def restore():
        interpreter._patch_lang = original
    return active, restore


def launch_signature(executor, args, kwargs) -> tuple:
    """``(kernel name, grid, constexpr values)`` of an interpreted launch."""
    import inspect
    fn = getattr(executor.fn, "fn", executor.fn)
    spec = inspect.getfullargspec(fn)
    names = set(spec.args) | set(spec.kwonlyargs)
    options = tuple(sorted((k, repr(v)) for k, v in kwargs.items() if k not in names))
    bound = inspect.getcallargs(fn, *args, **{k: v for k, v in kwargs.items() if k in names})
    consts = tuple(sorted((k, repr(bound[k])) for k in executor.constexprs if k in bound))
    consts += options  # num_warps and the other launch options
    grid = executor.grid(bound) if callable(executor.grid) else executor.grid
    return fn.__name__, tuple(int(g) for g in grid), consts


def trace_first_programs(run, index: SourceIndex | None = None, skip: int = 0,
                         signatures: list | None = None, dry: bool = False) -> list[Trace]:
    """Run ``run()`` (which launches interpreted kernels) executing each launch's first program
    only; returns one ``Trace`` per launch after the first ``skip`` launches (those are run but
    not traced, e.g. the forward before a backward). ``signatures`` (a list) receives each
    launch's ``launch_signature``; ``dry`` executes nothing (signatures only)."""
    from triton.runtime import interpreter
    index = index or SourceIndex()
    traces: list[Trace] = []
    seen = [0]
    original_call = interpreter.GridExecutor.__call__

    def call(self, *args, **kwargs):
        if signatures is not None:
            signatures.append(launch_signature(self, args, kwargs))
        if dry:
            return
        index.add_root(kernel_root(self.fn))
        code = getattr(self.fn, "fn", self.fn).__code__
        entry = (code.co_filename, code.co_name)
        tracer = _Tracer(index, entry) if seen[0] >= skip else None
        seen[0] += 1
        old = sys.gettrace()
        if tracer is not None:
            sys.settrace(tracer)
        try:
            original_call(self, *args, **kwargs)
        except _StopGrid:
            pass
        except interpreter.InterpreterError as e:
            if not isinstance(e.__cause__, _StopGrid):
                raise
        finally:
            sys.settrace(old)
            active.clear()
        if tracer is not None:
            traces.append(Trace(tracer.counts))

    restore = _first_program_only()
    active, unpatch = _patch_once(interpreter)
    interpreter.GridExecutor.__call__ = call
    try:
        run()
    finally:
        interpreter.GridExecutor.__call__ = original_call
        unpatch()
        restore()
    return traces
