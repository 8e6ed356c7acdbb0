"""Constants defined in more than one place agree: the method ids (``_constants.METHOD_IDS``, the
C++ ``Method`` enum in csrc/, the Triton constexprs, the compile check's variants), the schedule
table's columns and the ReDGE-Cov variance floor (Python vs C++), and the samplers' default
hyperparameters (``api`` signatures, ``registry.DEFAULTS`` and docs/EXPERIMENTS.md's table).

The C++ sources are read as text (no build needed); the Triton modules are imported."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
from pathlib import Path

import pytest

from redge_kernels import _constants, api, registry

ROOT = Path(__file__).resolve().parents[1]
METHOD_IDS = _constants.METHOD_IDS


def _tracked(pattern: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z", "--", pattern], cwd=ROOT, check=True,
                         capture_output=True).stdout.decode()
    return [ROOT / p for p in out.split("\0") if p and (ROOT / p).is_file()]


def _csrc_text() -> dict[Path, str]:
    files = [p for pat in ("csrc/*.h", "csrc/*.hpp", "csrc/*.cpp", "csrc/**/*.h", "csrc/**/*.cpp")
             for p in _tracked(pat)]
    return {p: _strip_comments(p.read_text()) for p in dict.fromkeys(files)}


def _strip_comments(src: str) -> str:
    src = re.sub(r"/\*.*?\*/", " ", src, flags=re.S)
    return re.sub(r"//[^\n]*", "", src)


def cpp_enums(name: str) -> list[tuple[Path, dict[str, int]]]:
    """Every ``enum [class] <name> [: type] { ... }`` of csrc/, as {enumerator: value} (implicit
    values counted as C++ does)."""
    pat = re.compile(r"\benum\s+(?:class\s+|struct\s+)?" + name + r"\b\s*(?::\s*[\w:\s]+?)?\{([^}]*)\}")
    found = []
    for path, src in _csrc_text().items():
        for m in pat.finditer(src):
            values, nxt = {}, 0
            for item in (i.strip() for i in m.group(1).split(",")):
                if not item:
                    continue
                key, _, val = (s.strip() for s in item.partition("="))
                nxt = int(val, 0) if val else nxt
                values[key] = nxt
                nxt += 1
            found.append((path, values))
    return found


def _norm(name: str) -> str:
    """``kReDGECov`` / ``redge_cov`` / ``REDGE_COV`` -> ``redgecov``."""
    name = re.sub(r"^k(?=[A-Z])", "", name)
    return name.replace("_", "").lower()


def test_cpp_method_enum_equals_method_ids():
    enums = cpp_enums("Method")
    assert enums, "no `enum Method` found under csrc/"
    want = {_norm(k): v for k, v in METHOD_IDS.items()}
    for path, values in enums:
        got = {_norm(k): v for k, v in values.items()}
        assert got == want, f"{path.relative_to(ROOT)}: {values} != METHOD_IDS {METHOD_IDS}"


def test_cpp_coefficient_columns_equal_the_python_ones():
    want = {"c": _constants.COEF_C, "a": _constants.COEF_A, "b": _constants.COEF_B,
            "alpha": _constants.COEF_ALPHA, "sigma": _constants.COEF_SIGMA}
    enums = cpp_enums("CoefCol")
    assert enums, "no `enum CoefCol` found under csrc/"
    for path, values in enums:
        got = {re.sub(r"^kcoef", "", k.lower()): v for k, v in values.items()}
        assert got == want, f"{path.relative_to(ROOT)}: {values}"


def test_cpp_variance_floor_equals_v_min():
    defs = [(p, float(m.group(1))) for p, src in _csrc_text().items()
            for m in re.finditer(r"\bkVMin\s*=\s*([0-9.eE+-]+)f?\s*;", src)]
    assert defs, "no kVMin definition found under csrc/"
    for path, value in defs:
        assert value == _constants.V_MIN, f"{path.relative_to(ROOT)}: kVMin = {value}"


def _triton_modules():
    pytest.importorskip("triton")
    import pkgutil

    import redge_kernels.triton as pkg
    return [importlib.import_module(f"{pkg.__name__}.{m.name}")
            for m in pkgutil.iter_modules(pkg.__path__)]


def test_triton_method_constexprs_equal_method_ids():
    import triton.language as tl
    by_name = {k.upper(): v for k, v in METHOD_IDS.items()}
    checked = 0
    for mod in _triton_modules():
        for attr, val in vars(mod).items():
            if attr in by_name and isinstance(val, tl.constexpr):
                assert val.value == by_name[attr], f"{mod.__name__}.{attr} = {val.value}"
                checked += 1
    # redge_kernels/triton/_onepass.py defines ST, GUMBEL, REINMAX; constexprs taken from
    # METHOD_IDS directly (no literal) pass this test as well.
    assert checked == 0 or checked >= 3


def test_compile_check_covers_every_method():
    """The compile check and the performance model take their configurations from the launcher
    (bench/kernel_compile.py captures real launches), named by METHOD_IDS keys: every method is
    compiled, and the hard-only ones are exactly those the API refuses with hard=False."""
    kc = importlib.import_module("bench.kernel_compile")
    assert sorted(kc.METHODS) == sorted(METHOD_IDS)
    assert set(kc.HARD_ONLY) == {"reinmax", "redge_max"}


HYPER = ("n_steps", "t_1", "tau")


def _signature_defaults(fn) -> dict:
    params = inspect.signature(fn).parameters
    return {k: p.default for k, p in params.items()
            if k in HYPER and p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize("name", sorted(registry.SAMPLERS))
def test_api_signature_defaults_equal_registry_defaults(name):
    fn = registry.SAMPLERS[name]
    assert _signature_defaults(fn) == registry.DEFAULTS[name]
    assert registry.SamplerConfig(name).kwargs == registry.DEFAULTS[name]


def test_every_public_sampler_has_registry_defaults():
    public = {api.redge, api.redge_cov, api.redge_max, api.straight_through, api.gumbel_softmax,
              api.reinmax}
    assert public <= set(registry.SAMPLERS.values())
    assert set(registry.DEFAULTS) == set(registry.SAMPLERS)


def test_experiments_page_defaults_equal_registry_defaults():
    """docs/EXPERIMENTS.md, "Sampler hyperparameters used by the authors", row "defaults"."""
    lines = (ROOT / "docs" / "EXPERIMENTS.md").read_text().splitlines()
    head = next(i for i, ln in enumerate(lines) if re.match(r"\|\s*\|\s*redge\s*\|", ln))
    cols = [c.strip() for c in lines[head].strip("|").split("|")][1:]
    row = next(ln for ln in lines[head:] if ln.startswith("| defaults"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    assert len(cells) == len(cols)
    for name, cell in zip(cols, cells):
        got = {}
        for item in cell.split(","):
            key, val = (s.strip() for s in item.split("="))
            key = {"n": "n_steps"}.get(key, key)
            got[key] = int(val) if key == "n_steps" else float(val)
        assert got == registry.DEFAULTS[name], (name, cell)
