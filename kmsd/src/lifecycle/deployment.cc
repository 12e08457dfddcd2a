#include "lifecycle/deployment.h"

#include <sys/stat.h>

#include <fstream>

#include "common/time_format.h"

namespace kms::daemon {
namespace {

/// What a hook printed, bounded, for the event log (sanitized there).
std::string hookOutput(const std::string& outFile) {
  std::string output;
  if (std::ifstream in(outFile, std::ios::binary); in) {
    output.resize(4096);
    in.read(output.data(), static_cast<std::streamsize>(output.size()));
    output.resize(static_cast<std::size_t>(in.gcount()));
  }
  return output;
}

}  // namespace

Result<std::unique_ptr<ChildProcess>> Deployment::start(const storage::IssuedCert& active,
                                                        const config::CertificateConfig& c,
                                                        const std::string& outFile) {
  const publisher::Published at = ctx_.services.webRoot().where(c.name, active.serial);
  return ChildProcess::spawn({*c.deployHook},
                             {"KMS_NAME=" + c.name, "KMS_CERT_PATH=" + at.immutablePath,
                              "KMS_CHAIN_PATH=" + at.currentPath, "KMS_X5U=" + active.x5uUrl.value_or(""),
                              "KMS_KEY_URI=" + active.keyUri, "KMS_SERIAL=" + active.serial,
                              "KMS_NOT_AFTER=" + isoTime(active.notAfter)},
                             outFile);
}

Result<StepOutcome> Deployment::deploy(const CertSnapshot& snap, const config::CertificateConfig& c) {
  if (!snap.active || !c.deployHook) {
    return StepOutcome{};
  }
  const storage::IssuedCert& active = *snap.active;
  const auto settings = ctx_.services.config();
  const Millis timeout = std::chrono::duration_cast<Millis>(settings->publisher.hookTimeout);
  const std::string outDir = settings->daemon.stateDir + "/hook-output";
  const std::string outFile = outDir + "/" + c.name + ".log";
  auto run = hooks_.await("deploy " + c.name + "/" + active.serial, timeout, [&] {
    ::mkdir(outDir.c_str(), 0700);
    return start(active, c, outFile);
  });
  if (!run) {
    Error e = run.error();
    e.message = "cannot run the deploy hook: " + e.message;
    ctx_.events.emit(
        {"KMS_DEPLOY_HOOK_FAILED", storage::EventLevel::error, c.name, e.toString(), {{"serial", active.serial}}});
    return fail(e);
  }
  if (run->running) {
    return hooks_.waitFor(*run->running, timeout);
  }
  return finished(active, c, run->status, outFile, timeout);
}

Result<StepOutcome> Deployment::finished(const storage::IssuedCert& active, const config::CertificateConfig& c,
                                         std::optional<int> status, const std::string& outFile, Millis timeout) {
  const std::string output = hookOutput(outFile);
  if (status && exitedCleanly(*status)) {
    const std::int64_t t = ctx_.now();
    auto tx = ctx_.store().with([&](storage::Store& st) {
      return st.transact([&]() -> Result<void> {
        if (auto r = st.markDeployed(active.id, t); !r) {
          return r;
        }
        return st.setState(c.name, storage::CertState::active, std::nullopt);
      });
    });
    if (!tx) {
      return fail(tx.error());
    }
    ctx_.events.emit({"KMS_DEPLOY_HOOK_RAN", storage::EventLevel::info, c.name,
                      "deploy hook ran for serial " + active.serial, {{"serial", active.serial}, {"output", output}}});
    return StepOutcome{};
  }
  const std::string what =
      status ? "failed with " + describeExit(*status)
             : "ran longer than " + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count()) +
                   " s and was killed";
  Error e{Errc::io, "deploy hook " + what, *c.deployHook, 0, {}, Disposition::retry, std::nullopt};
  ctx_.events.emit({"KMS_DEPLOY_HOOK_FAILED", storage::EventLevel::error, c.name, e.toString(),
                    {{"serial", active.serial}, {"output", output}}});
  return fail(e);
}

}  // namespace kms::daemon
