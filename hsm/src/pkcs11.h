#pragma once
// Private PKCS#11 plumbing of kms_hsm: the header, CKR names, the loaded module.

#include <memory>
#include <string>

#include <p11-kit/pkcs11.h>

#include "kms/error.h"

namespace kms::hsm {

/// "CKR_PIN_INCORRECT" for CKR_PIN_INCORRECT; "CKR_0x..." for unknown codes.
std::string ckrName(CK_RV rv);

/// Error for a failed PKCS#11 call: message "FN failed", nativeName the CKR constant,
/// code chosen from the CKR class (PIN errors are Errc::unauthorized).
Error ckError(const char* function, CK_RV rv, std::string context);

/// A dlopen()ed, initialised PKCS#11 module. One per path per process: open() returns
/// the live instance if there is one; C_Finalize and dlclose run when the last owner goes.
class Module {
 public:
  [[nodiscard]] static Result<std::shared_ptr<Module>> open(const std::string& path);
  ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  [[nodiscard]] CK_FUNCTION_LIST* fn() const { return fn_; }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  Module(std::string path, void* handle, CK_FUNCTION_LIST* fn, bool finalize)
      : path_(std::move(path)), handle_(handle), fn_(fn), finalize_(finalize) {}
  std::string path_;
  void* handle_;
  CK_FUNCTION_LIST* fn_;
  bool finalize_;
};

}  // namespace kms::hsm
