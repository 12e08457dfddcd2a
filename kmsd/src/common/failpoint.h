#pragma once
// Failpoints for the crash tests: in builds with KMS_FAILPOINTS (test builds only), when the
// environment variable KMSD_FAILPOINT names a point, kmsd SIGKILLs itself right after that
// step was recorded; when KMSD_PROGRESS_FD names an open descriptor, every point reached is
// written to it as a line (the random-kill test kills on progress, not on a clock). Other
// builds compile the call to nothing.

namespace kms::daemon {

#ifdef KMS_FAILPOINTS
/// Reports `name` on KMSD_PROGRESS_FD, then SIGKILLs this process when KMSD_FAILPOINT
/// equals `name`.
void failpoint(const char* name);
#else
inline void failpoint(const char* /*name*/) {}
#endif

}  // namespace kms::daemon
