// Minimal test harness for the C++ tests (no external test framework needed).
#pragma once

#include <cstdio>
#include <cstdlib>

namespace redge_test {
inline int& failures() {
  static int n = 0;
  return n;
}
inline int& checks() {
  static int n = 0;
  return n;
}
}  // namespace redge_test

#define CHECK(cond, ...)                                                        \
  do {                                                                          \
    ++redge_test::checks();                                                     \
    if (!(cond)) {                                                              \
      ++redge_test::failures();                                                 \
      std::fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                        \
      std::fprintf(stderr, "\n");                                               \
    }                                                                           \
  } while (0)

#define TEST_MAIN_RETURN(name)                                                  \
  do {                                                                          \
    std::printf("%s: %d checks, %d failures\n", name, redge_test::checks(),     \
                redge_test::failures());                                        \
    return redge_test::failures() == 0 ? EXIT_SUCCESS : EXIT_FAILURE;           \
  } while (0)
