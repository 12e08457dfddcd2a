#pragma once
// The kmsctl commands (one file each) that talk to the running daemon over its control socket, falling back to
// the state DB (read-only) when it is down.

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "kmsctl/client.h"

namespace kms::daemon {

struct StatusOptions {
  bool json = false;
  bool wide = false;      ///< full x5u URLs and errors, whatever the width
  bool terminal = false;  ///< stdout is a terminal: JSON indented
};

/// The status table (name, state, not after, next renewal, x5u, last error) or JSON, from
/// the daemon; with the daemon down, from the state DB, saying so.
int ctlStatus(Target& target, const StatusOptions& o, std::ostream& out, std::ostream& err);
/// Asks the daemon to renew NAME; with `wait`, waits until a new certificate is active or
/// the renewal failed. Exit 1 when the daemon is not running.
int ctlRenew(Target& target, const std::string& name, bool wait, std::ostream& out, std::ostream& err);
/// An RFC 5280 CRLReason given as its code ("4") or its name in any case ("superseded",
/// "keyCompromise", "cessationOfOperation", ...; certbot's lower-case spellings match);
/// empty for anything else, and for 7 (not used by RFC 5280).
[[nodiscard]] std::optional<int> parseRevocationReason(const std::string& text);
/// The RFC 5280 name of a reason code ("superseded"), or the number as text.
[[nodiscard]] std::string revocationReasonName(int code);
/// Asks the daemon to revoke NAME's active certificate (RFC 5280 reason code).
int ctlRevoke(Target& target, const std::string& name, int reason, std::ostream& out, std::ostream& err);
/// The keys on the token and what the state DB knows of them: from the daemon when it
/// runs, else by opening the token (saying so; the configuration must then be valid).
int ctlKeys(Target& target, bool json, std::ostream& out, std::ostream& err);
/// The kept STI-PA CA list and CRL (from the daemon, else the state DB); with `refresh`,
/// the daemon reads both now first (and renews what they affect).
int ctlTrust(Target& target, bool refresh, bool json, std::ostream& out, std::ostream& err);
/// The newest `limit` events, oldest first (newest first with `reverse`), from the daemon
/// or, when it is down, the state DB; with `follow`, from the daemon, printing new ones
/// as they come.
int ctlEvents(Target& target, int limit, bool follow, bool reverse, std::ostream& out, std::ostream& err);

/// kmsd's own alerts (firing, then resolved within a day) and what each channel was told;
/// from the daemon, else the state DB (saying so).
int ctlAlerts(Target& target, bool json, std::ostream& out, std::ostream& err);

/// Has the daemon copy the state DB and the SoftHSM2 token store consistently and writes
/// them under DIR (new or empty): kmsd.db, tokens/<uuid>/..., manifest.json (sizes, SHA-256,
/// versions, where each came from). Exit 1 when kmsd is not running.
int ctlBackup(Target& target, const std::string& dir, std::ostream& out, std::ostream& err);

/// What `kmsctl passport sign` asks for.
struct PassportOptions {
  std::string cert;  ///< empty: the only certificate
  std::string orig;
  std::vector<std::string> dest;
  std::string attest;
  std::string origid;   ///< empty: kmsd makes one
  std::string div;      ///< a diversion PASSporT from the number first called
  std::string rcdName;  ///< Rich Call Data display name
};
/// Has the daemon sign a PASSporT and prints the Identity header value; exit 1 naming the
/// cause when kmsd is down or refuses (the certificate not active, a bad number).
int ctlPassportSign(Target& target, const PassportOptions& o, std::ostream& out, std::ostream& err);

/// With the daemon down: the status from the state DB in the daemon's JSON shape.
int showStatus(Target& target, const StatusOptions& o, std::ostream& out, std::ostream& err);
/// With the daemon down: the keys, opening the token itself.
int listKeys(const config::Config& cfg, bool json, std::ostream& out, std::ostream& err);
/// With the daemon down: the CA list and CRL kept in the state DB.
int showTrust(Target& target, bool json, std::ostream& out, std::ostream& err);

}  // namespace kms::daemon
