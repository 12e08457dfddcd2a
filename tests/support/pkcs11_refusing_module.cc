// A PKCS#11 module for tests that forwards every call to a real one (SoftHSM2, named by
// KMS_SHIM_TARGET) except what KMS_SHIM_REFUSE lists, which it refuses the way a token that
// lacks the feature does:
//   C_CopyObject          -> CKR_FUNCTION_NOT_SUPPORTED
//   CKA_PUBLIC_KEY_INFO   -> C_SetAttributeValue of that attribute: CKR_ATTRIBUTE_TYPE_INVALID
// kms_shim_calls("C_CopyObject" | "C_GenerateKeyPair") counts the calls made through it, so a
// test can see which path the code under test took. The keys live on the real token.
#include <dlfcn.h>
#include <p11-kit/pkcs11.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace {

CK_FUNCTION_LIST* real = nullptr;
CK_FUNCTION_LIST shim;
std::atomic<int> copyCalls{0};
std::atomic<int> generateCalls{0};

bool refused(const char* what) {
  const char* list = std::getenv("KMS_SHIM_REFUSE");
  return list != nullptr && std::strstr(list, what) != nullptr;
}

CK_RV copyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR tmpl, CK_ULONG count,
                 CK_OBJECT_HANDLE_PTR copy) {
  copyCalls.fetch_add(1);
  if (refused("C_CopyObject")) {
    return CKR_FUNCTION_NOT_SUPPORTED;
  }
  return real->C_CopyObject(session, object, tmpl, count, copy);
}

CK_RV generateKeyPair(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_ATTRIBUTE_PTR pubTmpl,
                      CK_ULONG pubCount, CK_ATTRIBUTE_PTR privTmpl, CK_ULONG privCount, CK_OBJECT_HANDLE_PTR pub,
                      CK_OBJECT_HANDLE_PTR priv) {
  generateCalls.fetch_add(1);
  return real->C_GenerateKeyPair(session, mechanism, pubTmpl, pubCount, privTmpl, privCount, pub, priv);
}

CK_RV setAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR tmpl, CK_ULONG count) {
  if (refused("CKA_PUBLIC_KEY_INFO")) {
    for (CK_ULONG i = 0; i < count; ++i) {
      if (tmpl[i].type == CKA_PUBLIC_KEY_INFO) {
        return CKR_ATTRIBUTE_TYPE_INVALID;
      }
    }
  }
  return real->C_SetAttributeValue(session, object, tmpl, count);
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  if (list == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  if (real == nullptr) {
    const char* target = std::getenv("KMS_SHIM_TARGET");
    void* lib = target != nullptr ? ::dlopen(target, RTLD_NOW | RTLD_LOCAL) : nullptr;
    auto getList = lib != nullptr ? reinterpret_cast<CK_C_GetFunctionList>(::dlsym(lib, "C_GetFunctionList")) : nullptr;
    if (getList == nullptr || getList(&real) != CKR_OK) {
      real = nullptr;
      return CKR_GENERAL_ERROR;
    }
    shim = *real;
    shim.C_CopyObject = copyObject;
    shim.C_GenerateKeyPair = generateKeyPair;
    shim.C_SetAttributeValue = setAttributeValue;
  }
  *list = &shim;
  return CKR_OK;
}

__attribute__((visibility("default"))) int kms_shim_calls(const char* function) {
  if (std::strcmp(function, "C_CopyObject") == 0) {
    return copyCalls.load();
  }
  if (std::strcmp(function, "C_GenerateKeyPair") == 0) {
    return generateCalls.load();
  }
  return -1;
}

}  // extern "C"
