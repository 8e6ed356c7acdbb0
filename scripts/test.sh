#!/usr/bin/env bash
# Run the whole test suite on an installed checkout (scripts/setup.sh first): the C++ unit tests
# through CMake/ctest, then pytest in TEST_WORKERS processes (Triton kernels under
# TRITON_INTERPRET=1 when there is no GPU; the harness checks of the benchmarks and the
# ahead-of-time compile check are test modules too).
set -uo pipefail
cd "$(dirname "$0")/.."
status=0

if [ -f CMakeLists.txt ]; then
  echo "== C++: CMake build + ctest"
  prefix=$(python -c "import torch; print(torch.utils.cmake_prefix_path)")
  mkdir -p build
  if cmake -S . -B build/cmake -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" >build/cmake.log 2>&1 \
     && cmake --build build/cmake -j "${MAX_JOBS:-2}" >>build/cmake.log 2>&1; then
    (cd build/cmake && ctest --output-on-failure) || status=1
  else
    tail -50 build/cmake.log; status=1
  fi
fi

echo "== pytest"
# Test modules run in TEST_WORKERS processes (pytest-xdist; default 2, 0 or no xdist: serially),
# each module whole in one worker (--dist loadscope: the modules that compile, spawn or build
# once per module keep doing it once).
workers=${TEST_WORKERS:-2}
if [ "$workers" != "0" ] && python -c "import xdist" 2>/dev/null; then
  python -m pytest tests -q -p no:cacheprovider -n "$workers" --dist loadscope
else
  python -m pytest tests -q -p no:cacheprovider
fi
rc=$?
if [ $rc -eq 5 ]; then echo "pytest collected no tests: failing"; rc=1; fi
[ $rc -eq 0 ] || status=1

exit $status
