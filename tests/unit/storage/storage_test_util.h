#pragma once
/// @file Assertion helpers for kms::Result in the storage tests.

#include <gtest/gtest.h>

/// Fails the test (and returns) when a Result holds an error, printing it.
#define KMS_ASSERT_OK(result) ASSERT_TRUE((result).has_value()) << (result).error().toString()

/// Non-fatal variant.
#define KMS_EXPECT_OK(result) EXPECT_TRUE((result).has_value()) << (result).error().toString()
