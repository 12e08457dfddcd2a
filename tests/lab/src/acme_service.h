#pragma once
/// @file The lab STI-CA: an RFC 8555 ACME server for TNAuthList identifiers with the
/// tkauth-01 challenge (RFC 9447/9448), SHAKEN issuance, revocation into the STI-PA CRL,
/// RFC 9773 renewal information and key rollover. Everything under /acme:
///
///   GET  directory                HEAD/GET new-nonce          GET renewal-info/<certID>
///   POST new-account  new-order  revoke-cert  key-change
///   POST acct/<id>  acct/<id>/orders  order/<id>  order/<id>/finalize  authz/<id>
///        chall/<id>  cert/<id>
///
/// Validation is synchronous: the challenge POST answers valid or invalid.

#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_set>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "http_types.h"
#include "lab_context.h"

namespace kms::lab {

class AcmeService {
 public:
  explicit AcmeService(LabContext& ctx) : ctx_(ctx) {}

  /// Handles a request whose path starts with /acme/. The caller holds the lab mutex.
  [[nodiscard]] LabReply handle(const LabRequest& request);

 private:
  struct Challenge {
    std::string token;
    std::string status = "pending";
    std::optional<nlohmann::json> error;
    std::string validated;
  };
  struct Authz {
    std::string id;
    std::string accountId;
    std::string orderId;
    std::string status = "pending";
    std::string expires;
    Challenge challenge;
  };
  struct Order {
    std::string id;
    std::string accountId;
    std::string status = "pending";
    std::string expires;
    std::string identifierType;
    std::string identifierValue;
    pki::Bytes der;  ///< the identifier's TNAuthList DER
    std::string spc;
    std::vector<std::string> authzIds;
    std::string certId;
    std::optional<std::string> replaces;
    std::optional<nlohmann::json> error;
    /// --processing-seconds: when the order turns valid (certId is set then).
    std::optional<std::chrono::steady_clock::time_point> processingUntil;
    std::string pendingCertId;
  };
  /// A verified POST: who signed it and what.
  struct Post {
    std::string payload;
    pki::EcPublicKey key;
    StoredAccount* account = nullptr;  ///< set for kid requests
  };

  LabReply route(const LabRequest& request);
  std::variant<Post, LabReply> verifyPost(const LabRequest& request, bool jwkAllowed, bool jwkRequired);

  LabReply directory() const;
  LabReply renewalInfo(const std::string& certId);
  LabReply newAccount(const Post& post);
  LabReply account(const Post& post, const std::string& id);
  LabReply accountOrders(const Post& post, const std::string& id);
  LabReply newOrder(const Post& post);
  LabReply order(const Post& post, const std::string& id);
  LabReply finalize(const Post& post, const std::string& id);
  LabReply authorization(const Post& post, const std::string& id);
  LabReply challenge(const Post& post, const std::string& id);
  LabReply certificate(const Post& post, const std::string& id);
  LabReply revoke(const Post& post);
  LabReply keyChange(const Post& post);

  /// The error detail when the EAB member is wrong, nullopt when it verifies.
  std::optional<std::string> checkEab(const nlohmann::json& eab, const pki::EcPublicKey& accountKey) const;
  void validateChallenge(Authz& authz, Order& order, const std::string& token, const pki::EcPublicKey& accountKey);
  void refreshOrder(Order& order);

  nlohmann::json accountJson(const StoredAccount& account) const;
  nlohmann::json orderJson(const Order& order) const;
  nlohmann::json authzJson(const Authz& authz) const;
  nlohmann::json challengeJson(const Authz& authz) const;
  LabReply saveOr500(LabReply reply);

  std::string newNonce();

  LabContext& ctx_;
  std::unordered_set<std::string> nonces_;
  std::deque<std::string> nonceOrder_;
  std::map<std::string, Order> orders_;
  int newOrdersSeen_ = 0;                                              ///< --rate-limit-after
  std::optional<std::chrono::steady_clock::time_point> limitedUntil_;  ///< --rate-limit-seconds
  std::map<std::string, Authz> authzs_;
  std::set<std::string> usedJti_;
  std::set<std::string> replaced_;  ///< ARI certIDs already named by an order's "replaces"
};

/// A problem document reply (application/problem+json) with type urn:ietf:params:acme:error:<type>.
[[nodiscard]] LabReply acmeProblem(int status, const std::string& type, const std::string& detail);

}  // namespace kms::lab
