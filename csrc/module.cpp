// Python module init of redge_kernels._C. Importing the module loads this shared library, whose
// static initialisers (ops_cpu.cpp, TORCH_LIBRARY_IMPL) register the CPU kernels of
// redge_kernels::fwd / ::bwd. The op schemas are defined in Python (redge_kernels/ops.py).
#include <Python.h>

static PyModuleDef redge_kernels_C_module = {
    PyModuleDef_HEAD_INIT, "_C",
    "C++ CPU kernels of redge_kernels::fwd / ::bwd (registered on import).", -1, nullptr,
    nullptr, nullptr, nullptr, nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&redge_kernels_C_module); }
