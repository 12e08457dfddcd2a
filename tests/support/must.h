#pragma once
/// @file test::must(result): the value, or an exception naming the error. A test that needs
/// a value fails cleanly (gtest reports the exception) instead of dereferencing an error.

#include <stdexcept>
#include <utility>

#include "kms/error.h"

namespace kms::test {

template <class T>
T must(Result<T> result) {
  if (!result) {
    throw std::runtime_error(result.error().toString());
  }
  return std::move(*result);
}

}  // namespace kms::test
