#include <dlfcn.h>
#include <sys/stat.h>

#include <map>
#include <mutex>

#include "pkcs11.h"

namespace kms::hsm {
namespace {

std::mutex& registryMutex() {
  static std::mutex m;
  return m;
}

std::map<std::string, std::weak_ptr<Module>>& registry() {
  static std::map<std::string, std::weak_ptr<Module>> r;
  return r;
}

}  // namespace

std::string ckrName(CK_RV rv) {
  switch (rv) {
#define KMS_CKR(x) \
  case x:          \
    return #x;
    KMS_CKR(CKR_OK)
    KMS_CKR(CKR_CANCEL)
    KMS_CKR(CKR_HOST_MEMORY)
    KMS_CKR(CKR_SLOT_ID_INVALID)
    KMS_CKR(CKR_GENERAL_ERROR)
    KMS_CKR(CKR_FUNCTION_FAILED)
    KMS_CKR(CKR_ARGUMENTS_BAD)
    KMS_CKR(CKR_ATTRIBUTE_READ_ONLY)
    KMS_CKR(CKR_ATTRIBUTE_SENSITIVE)
    KMS_CKR(CKR_ATTRIBUTE_TYPE_INVALID)
    KMS_CKR(CKR_ATTRIBUTE_VALUE_INVALID)
    KMS_CKR(CKR_DATA_INVALID)
    KMS_CKR(CKR_DATA_LEN_RANGE)
    KMS_CKR(CKR_DEVICE_ERROR)
    KMS_CKR(CKR_DEVICE_MEMORY)
    KMS_CKR(CKR_DEVICE_REMOVED)
    KMS_CKR(CKR_FUNCTION_CANCELED)
    KMS_CKR(CKR_FUNCTION_NOT_SUPPORTED)
    KMS_CKR(CKR_KEY_HANDLE_INVALID)
    KMS_CKR(CKR_KEY_TYPE_INCONSISTENT)
    KMS_CKR(CKR_KEY_FUNCTION_NOT_PERMITTED)
    KMS_CKR(CKR_MECHANISM_INVALID)
    KMS_CKR(CKR_MECHANISM_PARAM_INVALID)
    KMS_CKR(CKR_OBJECT_HANDLE_INVALID)
    KMS_CKR(CKR_OPERATION_ACTIVE)
    KMS_CKR(CKR_OPERATION_NOT_INITIALIZED)
    KMS_CKR(CKR_PIN_INCORRECT)
    KMS_CKR(CKR_PIN_INVALID)
    KMS_CKR(CKR_PIN_LEN_RANGE)
    KMS_CKR(CKR_PIN_EXPIRED)
    KMS_CKR(CKR_PIN_LOCKED)
    KMS_CKR(CKR_SESSION_CLOSED)
    KMS_CKR(CKR_SESSION_COUNT)
    KMS_CKR(CKR_SESSION_HANDLE_INVALID)
    KMS_CKR(CKR_SESSION_READ_ONLY)
    KMS_CKR(CKR_SESSION_EXISTS)
    KMS_CKR(CKR_SIGNATURE_INVALID)
    KMS_CKR(CKR_SIGNATURE_LEN_RANGE)
    KMS_CKR(CKR_TEMPLATE_INCOMPLETE)
    KMS_CKR(CKR_TEMPLATE_INCONSISTENT)
    KMS_CKR(CKR_TOKEN_NOT_PRESENT)
    KMS_CKR(CKR_TOKEN_NOT_RECOGNIZED)
    KMS_CKR(CKR_TOKEN_WRITE_PROTECTED)
    KMS_CKR(CKR_USER_ALREADY_LOGGED_IN)
    KMS_CKR(CKR_USER_NOT_LOGGED_IN)
    KMS_CKR(CKR_USER_PIN_NOT_INITIALIZED)
    KMS_CKR(CKR_USER_TYPE_INVALID)
    KMS_CKR(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
    KMS_CKR(CKR_USER_TOO_MANY_TYPES)
    KMS_CKR(CKR_DOMAIN_PARAMS_INVALID)
    KMS_CKR(CKR_CURVE_NOT_SUPPORTED)
    KMS_CKR(CKR_BUFFER_TOO_SMALL)
    KMS_CKR(CKR_CRYPTOKI_NOT_INITIALIZED)
    KMS_CKR(CKR_CRYPTOKI_ALREADY_INITIALIZED)
    KMS_CKR(CKR_MUTEX_BAD)
    KMS_CKR(CKR_MUTEX_NOT_LOCKED)
#undef KMS_CKR
    default: {
      static constexpr char kHex[] = "0123456789ABCDEF";
      std::string out = "CKR_0x00000000";
      auto v = static_cast<unsigned long>(rv);
      for (std::size_t i = out.size(); i > 6; --i, v >>= 4) {
        out[i - 1] = kHex[v & 15];
      }
      return out;
    }
  }
}

Error ckError(const char* function, CK_RV rv, std::string context) {
  Errc code = Errc::hsm;
  switch (rv) {
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_EXPIRED:
    case CKR_PIN_LOCKED:
    case CKR_USER_PIN_NOT_INITIALIZED:
      code = Errc::unauthorized;
      break;
    default:
      break;
  }
  return Error{code,
               std::string(function) + " failed",
               std::move(context),
               static_cast<std::int64_t>(rv),
               ckrName(rv),
               Disposition::retry,
               std::nullopt};
}

Result<std::shared_ptr<Module>> Module::open(const std::string& path) {
  std::lock_guard<std::mutex> lock(registryMutex());
  if (auto live = registry()[path].lock()) {
    return live;
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return fail(Errc::notFound, "PKCS#11 module not found", path);
  }
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    return fail(Errc::hsm, std::string("cannot load PKCS#11 module: ") + (why != nullptr ? why : "dlopen failed"),
                path);
  }
  auto getList = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle, "C_GetFunctionList"));
  if (getList == nullptr) {
    ::dlclose(handle);
    return fail(Errc::hsm, "not a PKCS#11 module (no C_GetFunctionList)", path);
  }
  CK_FUNCTION_LIST* fn = nullptr;
  CK_RV rv = getList(&fn);
  if (rv != CKR_OK || fn == nullptr) {
    ::dlclose(handle);
    return fail(ckError("C_GetFunctionList", rv, path));
  }
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  rv = fn->C_Initialize(&args);
  bool finalize = true;
  if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    finalize = false;  // someone else in this process owns initialisation
  } else if (rv != CKR_OK) {
    ::dlclose(handle);
    return fail(ckError("C_Initialize", rv, path));
  }
  std::shared_ptr<Module> module(new Module(path, handle, fn, finalize));
  registry()[path] = module;
  return module;
}

Module::~Module() {
  if (finalize_) {
    fn_->C_Finalize(nullptr);
  }
  ::dlclose(handle_);
}

}  // namespace kms::hsm
