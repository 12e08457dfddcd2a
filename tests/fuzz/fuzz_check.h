#pragma once
/// @file Invariant checks for the fuzz targets: a broken invariant prints what broke and
/// aborts, so libFuzzer saves the input as a crash.

#include <cstdio>
#include <cstdlib>

#define KMS_FUZZ_CHECK(condition, what)                                                                  \
  do {                                                                                                   \
    if (!(condition)) {                                                                                  \
      std::fprintf(stderr, "%s:%d: fuzz invariant broken: %s (%s)\n", __FILE__, __LINE__, what, #condition); \
      std::abort();                                                                                      \
    }                                                                                                    \
  } while (false)
