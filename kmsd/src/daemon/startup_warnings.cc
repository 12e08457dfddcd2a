// What kmsd says at start about settings that weaken it.
#include "daemon/daemon_parts.h"

namespace kms::daemon {
namespace {

using storage::EventLevel;

void insecureTrust(const Daemon::Parts& p) {
  const config::Config& c = *p.config;
  const bool skipSigner = c.stiPa && c.stiPa->insecureSkipSignerCheck && !c.stiPa->trustAnchor;
  const bool skipChain = c.acme.insecureSkipChainCheck && !c.acme.trustAnchors && !c.stiPa;
  if (skipSigner || skipChain) {
    p.sink->emit({"KMS_INSECURE_TRUST", EventLevel::warning, std::nullopt,
                  std::string("running with trust checks switched off for a lab: ") +
                      (skipSigner ? "SPC tokens and the CA list are not chained to an STI-PA root" : "") +
                      (skipSigner && skipChain ? "; " : "") +
                      (skipChain ? "issued chains are not checked against any trust anchor" : ""),
                  {}});
  }
  if (c.stiPa && !c.stiPa->crlSigner) {
    p.sink->emit({"KMS_INSECURE_TRUST", EventLevel::warning, std::nullopt,
                  "[sti_pa] crl_signer is not set: the STI-PA CRL is not read, so a revoked certificate or CA "
                  "goes unnoticed",
                  {}});
  }
}

}  // namespace

void emitStartupWarnings(const Daemon::Parts& p) {
  const config::DaemonConfig& d = p.config->daemon;
  insecureTrust(p);
  if (const auto caps = listenerLimits(d); static_cast<int>(caps.maxConnections) < d.listenerMaxConnections) {
    p.sink->emit({"KMS_FD_LIMIT_LOW", EventLevel::warning, std::nullopt,
                  "the descriptor limit (RLIMIT_NOFILE " + std::to_string(p.descriptorLimit) +
                      ") holds each listener to " + std::to_string(caps.maxConnections) +
                      " connections instead of [daemon] listener_max_connections = " +
                      std::to_string(d.listenerMaxConnections),
                  {{"limit", std::to_string(p.descriptorLimit)}}});
  }
}

}  // namespace kms::daemon
