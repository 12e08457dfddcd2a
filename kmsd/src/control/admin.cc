#include "control/admin.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

namespace kms::daemon {

Fields callerFields(const http::ServerRequest& req) {
  if (!req.peer) {
    return {};
  }
  return {{"uid", std::to_string(req.peer->uid)}};
}

namespace {

/// Whether user `uid` is a member of `gid` (primary or supplementary).
bool memberOf(uid_t uid, gid_t gid) {
  std::vector<char> buf(16384);
  struct passwd pwd {};
  struct passwd* pw = nullptr;
  if (::getpwuid_r(uid, &pwd, buf.data(), buf.size(), &pw) != 0 || pw == nullptr) {
    return false;
  }
  std::vector<gid_t> groups(64);
  int n = static_cast<int>(groups.size());
  if (::getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<std::size_t>(n));
    (void)::getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &n);
  }
  groups.resize(static_cast<std::size_t>(std::max(n, 0)));
  return std::find(groups.begin(), groups.end(), gid) != groups.end();
}

}  // namespace

std::optional<std::string> adminRefusal(const std::optional<http::PeerCredentials>& peer,
                                        const std::optional<std::string>& group) {
  if (!group) {
    return std::nullopt;
  }
  const std::string why = "revocation is restricted to root, kmsd's user and the members of group " + *group +
                          " ([daemon] control_admin_group)";
  if (!peer) {
    return why;
  }
  if (peer->uid == 0 || peer->uid == ::geteuid()) {
    return std::nullopt;
  }
  // The _r forms: this runs on a worker thread.
  std::vector<char> buf(16384);
  struct group gr {};
  struct group* g = nullptr;
  if (::getgrnam_r(group->c_str(), &gr, buf.data(), buf.size(), &g) != 0 || g == nullptr) {
    return why + "; the group no longer exists";
  }
  if (peer->gid == g->gr_gid || memberOf(peer->uid, g->gr_gid)) {
    return std::nullopt;
  }
  return why + "; uid " + std::to_string(peer->uid) + " is not one of them";
}

}  // namespace kms::daemon
