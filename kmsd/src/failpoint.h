#pragma once
// Failpoints for the crash tests: in builds with KMS_FAILPOINTS (test builds only), when the
// environment variable KMSD_FAILPOINT names a point, kmsd SIGKILLs itself right after that
// step was recorded. Other builds compile the call to nothing.

namespace kms::daemon {

#ifdef KMS_FAILPOINTS
/// SIGKILLs this process when KMSD_FAILPOINT equals `name`.
void failpoint(const char* name);
#else
inline void failpoint(const char* /*name*/) {}
#endif

}  // namespace kms::daemon
