#pragma once
/// @file One RAII idiom for C pointers: `CPtr<X509, &X509_free>`.

#include <memory>

namespace kms {

template <auto FreeFn>
struct CDeleter {
  template <class T>
  void operator()(T* p) const noexcept {
    if (p != nullptr) {
      FreeFn(p);
    }
  }
};

/// unique_ptr owning a C object released with FreeFn.
template <class T, auto FreeFn>
using CPtr = std::unique_ptr<T, CDeleter<FreeFn>>;

}  // namespace kms
