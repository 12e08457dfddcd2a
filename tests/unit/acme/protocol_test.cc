// ACME wire formats without a server: JWS shapes, EAB, key change, key authorization,
// problem documents, Retry-After, object parsing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "acme/client.h"
#include "acme/issuer.h"
#include "acme/jws.h"
#include "pki/encoding.h"
#include "pki/jose.h"
#include "sandbox.h"

namespace kms::acme {
namespace {

using nlohmann::json;

json decodeJson(const std::string& b64) {
  auto bytes = pki::base64UrlDecode(b64);
  EXPECT_TRUE(bytes.has_value());
  return json::parse(std::string(bytes->begin(), bytes->end()));
}

TEST(AcmeJws, KidAndJwkForms) {
  auto key = *pki::SoftwareKey::generate();
  auto withKid = signRequest(*key, "https://ca/new-order", "nonce-1", "https://ca/acct/1", R"({"a":1})");
  ASSERT_TRUE(withKid.has_value());
  json jws = json::parse(*withKid);
  json header = decodeJson(jws["protected"]);
  EXPECT_EQ(
      header,
      (json{{"alg", "ES256"}, {"kid", "https://ca/acct/1"}, {"nonce", "nonce-1"}, {"url", "https://ca/new-order"}}));
  EXPECT_EQ(decodeJson(jws["payload"]), json::parse(R"({"a":1})"));
  auto sig = pki::base64UrlDecode(jws["signature"].get<std::string>());
  ASSERT_EQ(sig->size(), 64U);
  std::string input = jws["protected"].get<std::string>() + "." + jws["payload"].get<std::string>();
  EXPECT_TRUE(*key->publicKey().verifyEs256(pki::asBytes(input), *sig));

  auto withJwk = signRequest(*key, "https://ca/new-acct", "n2", "", "");
  json jws2 = json::parse(*withJwk);
  json header2 = decodeJson(jws2["protected"]);
  EXPECT_FALSE(header2.contains("kid"));
  EXPECT_EQ(header2["jwk"], json::parse(key->publicKey().jwkJson()));
  EXPECT_EQ(jws2["payload"], "");  // POST-as-GET
}

TEST(AcmeJws, ExternalAccountBindingIsHs256OverTheJwk) {
  auto key = *pki::SoftwareKey::generate();
  SecretBytes hmac(std::string_view("0123456789abcdef0123456789abcdef"));
  auto eab = externalAccountBinding(hmac, "kid-1", "https://ca/new-acct", key->publicKey());
  ASSERT_TRUE(eab.has_value());
  auto parsed = pki::parseFlattenedJws(*eab);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(json::parse(parsed->protectedJson),
            (json{{"alg", "HS256"}, {"kid", "kid-1"}, {"url", "https://ca/new-acct"}}));
  EXPECT_EQ(parsed->payload, key->publicKey().jwkJson());
  // The MAC, computed independently by the openssl command over the JWS signing input.
  test::Sandbox sandbox;
  const std::string input = sandbox.write("signing-input", parsed->signingInput);
  std::string out;
  ASSERT_EQ(test::runCommand("openssl dgst -sha256 -mac HMAC -macopt key:0123456789abcdef0123456789abcdef -r '" +
                                 input + "'",
                             &out),
            0)
      << out;
  std::string mine = pki::hexEncode(parsed->signature);
  std::transform(mine.begin(), mine.end(), mine.begin(), [](unsigned char c) { return std::tolower(c); });
  EXPECT_EQ(out.substr(0, out.find(' ')), mine) << out;
  SecretBytes other(std::string_view("another key"));
  EXPECT_NE(*externalAccountBinding(other, "kid-1", "https://ca/new-acct", key->publicKey()), *eab);
  EXPECT_EQ(parsed->signature.size(), 32U);
}

TEST(AcmeJws, KeyChangeInnerHasNoNonceOrKid) {
  auto oldKey = *pki::SoftwareKey::generate();
  auto newKey = *pki::SoftwareKey::generate();
  auto inner = keyChangeInner(*newKey, "https://ca/key-change", "https://ca/acct/7", oldKey->publicKey());
  ASSERT_TRUE(inner.has_value());
  auto parsed = pki::parseFlattenedJws(*inner);
  json header = json::parse(parsed->protectedJson);
  EXPECT_EQ(header.size(), 3U);
  EXPECT_EQ(header["jwk"], json::parse(newKey->publicKey().jwkJson()));
  EXPECT_EQ(header["url"], "https://ca/key-change");
  EXPECT_EQ(json::parse(parsed->payload),
            (json{{"account", "https://ca/acct/7"}, {"oldKey", json::parse(oldKey->publicKey().jwkJson())}}));
  EXPECT_TRUE(*newKey->publicKey().verifyEs256(pki::asBytes(parsed->signingInput), parsed->signature));
}

TEST(AcmeJws, KeyAuthorizationAndDnsValue) {
  auto key = pki::EcPublicKey::fromJwkCoordinates("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                                                  "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0");
  EXPECT_EQ(keyAuthorization("tok", *key), "tok.oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U");
  EXPECT_EQ(dns01TxtValue("tok.oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U"),
            pki::base64UrlEncode(pki::sha256(pki::asBytes("tok.oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U"))));
}

TEST(AcmeJws, CompactParsingRejectsGarbage) {
  EXPECT_EQ(pki::parseCompactJws("a.b").error().message, "compact JWS must have exactly three parts");
  EXPECT_EQ(pki::parseCompactJws("a.b.c.d").error().message, "compact JWS must have exactly three parts");
  EXPECT_EQ(pki::parseCompactJws("!!.e30.AA").error().message, "JWS protected header is not base64url");
  EXPECT_EQ(pki::parseCompactJws("bm90IGpzb24.e30.AA").error().message, "JWS protected header is not JSON");
  auto ok = pki::parseCompactJws("e30.aGk.AAAA");
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->payload, "hi");
  EXPECT_EQ(pki::parseFlattenedJws("[]").error().message, "flattened JWS is not a JSON object");
  EXPECT_EQ(pki::parseFlattenedJws(R"({"protected":"e30","payload":1})").error().message,
            "flattened JWS has no string member 'payload'");
}

HttpResponse problem(long status, const std::string& body, std::optional<std::string> retryAfter = std::nullopt) {
  HttpResponse r;
  r.status = status;
  r.headers.emplace_back("content-type", "application/problem+json");
  if (retryAfter) {
    r.headers.emplace_back("retry-after", *retryAfter);
  }
  r.body = body;
  return r;
}

TEST(AcmeAuthorization, OnlyWhatTheOrderAskedForWithSaneCharacters) {
  const std::vector<Identifier> asked{{"dns", "a.example"}, {"dns", "*.b.example"}};
  auto check = [&](const std::string& type, const std::string& value, bool wildcard, const std::string& token) {
    Authorization a;
    a.url = "https://ca.example/authz/1";
    a.identifier = {type, value};
    a.wildcard = wildcard;
    Challenge c;
    c.type = "dns-01";
    c.token = token;
    return checkAuthorization(a, c, asked);
  };
  const std::string token = "IlirfxKKXAsHtmzK29Pj8A";
  EXPECT_TRUE(check("dns", "a.example", false, token).has_value());
  EXPECT_TRUE(check("dns", "A.Example", false, token).has_value());
  EXPECT_TRUE(check("dns", "b.example", true, token).has_value());
  auto message = [&](const std::string& type, const std::string& value, bool wildcard, const std::string& tok) {
    auto r = check(type, value, wildcard, tok);
    EXPECT_FALSE(r.has_value()) << value;
    if (r.has_value()) {
      return std::string();
    }
    EXPECT_EQ(r.error().code, Errc::protocol);
    EXPECT_EQ(r.error().disposition, Disposition::permanent);
    EXPECT_EQ(r.error().context, "https://ca.example/authz/1");
    return r.error().message;
  };
  // Not asked for (b.example only as a wildcard), another type, injected commands.
  EXPECT_EQ(message("dns", "b.example", false, token),
            "the CA's authorization is for 'b.example', which the order did not ask for");
  EXPECT_EQ(message("dns", "evil.example", false, token),
            "the CA's authorization is for 'evil.example', which the order did not ask for");
  EXPECT_EQ(message("ip", "127.0.0.1", false, token),
            "the CA's authorization has an identifier of type 'ip', which the order did not ask for");
  EXPECT_EQ(message("dns", "a.example\nupdate add evil.example 60 TXT x\nsend", false, token),
            "the CA's authorization names a malformed DNS identifier "
            "'a.example\\x0aupdate add evil.example 60 TXT x\\x0asend'");
  EXPECT_EQ(message("dns", "a.example", false, "$(touch /tmp/pwned)"),
            "the CA's authorization carries a challenge token that is not base64url");
  EXPECT_EQ(message("dns", "a..example", false, token),
            "the CA's authorization names a malformed DNS identifier 'a..example'");
  EXPECT_EQ(message("TNAuthList", "MAigBhYEMTIzNA==", false, token),
            "the CA's authorization is for a TNAuthList, which the order did not ask for");
}

TEST(AcmeProblem, TypedErrors) {
  Error bad = problemError(problem(400, R"({"type":"urn:ietf:params:acme:error:badNonce","detail":"stale"})"), "u");
  EXPECT_EQ(bad.nativeName, "badNonce");
  EXPECT_EQ(bad.disposition, Disposition::retry);
  EXPECT_EQ(bad.toString(), "u: ACME badNonce: stale (badNonce)");

  Error rate =
      problemError(problem(429, R"({"type":"urn:ietf:params:acme:error:rateLimited","detail":"slow"})", "120"), "u");
  EXPECT_EQ(rate.disposition, Disposition::caPause);
  EXPECT_EQ(rate.retryAfter, std::chrono::seconds(120));

  Error unauth = problemError(problem(403, R"({"type":"urn:ietf:params:acme:error:unauthorized","detail":"no"})"), "u");
  EXPECT_EQ(unauth.code, Errc::unauthorized);
  EXPECT_EQ(unauth.disposition, Disposition::retry);

  Error csr = problemError(problem(400, R"({"type":"urn:ietf:params:acme:error:badCSR","detail":"key"})"), "u");
  EXPECT_EQ(csr.code, Errc::protocol);
  EXPECT_EQ(csr.native, 400);
  EXPECT_EQ(csr.disposition, Disposition::permanent);  // the same CSR is refused again

  Error gone = problemError(problem(400, R"({"type":"urn:ietf:params:acme:error:accountDoesNotExist"})"), "u");
  EXPECT_EQ(gone.code, Errc::notFound);

  Error internal = problemError(problem(500, R"({"type":"urn:ietf:params:acme:error:serverInternal"})"), "u");
  EXPECT_EQ(internal.disposition, Disposition::retry);

  Error sub = problemError(problem(400, R"({"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"bad names",
                       "subproblems":[{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"no",
                                       "identifier":{"type":"dns","value":"x.example"}}]})"),
                           "u");
  EXPECT_EQ(sub.message, "ACME rejectedIdentifier: bad names; x.example: no");

  HttpResponse html;
  html.status = 502;
  html.body = "<html>bad gateway</html>";
  Error gw = problemError(html, "u");
  EXPECT_EQ(gw.nativeName, "HTTP 502");
  EXPECT_EQ(gw.disposition, Disposition::retry);

  // Down, and naming when to come back: every request to the CA waits; without a time, only
  // the request that failed does.
  Error down = problemError(problem(503, R"({"type":"urn:ietf:params:acme:error:serverInternal"})", "60"), "u");
  EXPECT_EQ(down.disposition, Disposition::caPause);
  Error downNoTime = problemError(problem(503, R"({"type":"urn:ietf:params:acme:error:serverInternal"})"), "u");
  EXPECT_EQ(downNoTime.disposition, Disposition::retry);
  Error limited = problemError(problem(429, "not json"), "u");
  EXPECT_EQ(limited.disposition, Disposition::caPause);
}

TEST(AcmeProblem, HostileMembersNeitherThrowNorOverflow) {
  // Inputs found by tests/fuzz (fuzz_acme_objects).
  Error e = problemError(problem(400, R"({"type":1,"detail":[],"subproblems":[{"identifier":{"value":5}},3]})"), "u");
  EXPECT_EQ(e.nativeName, "HTTP 400");
  auto now = std::chrono::system_clock::from_time_t(1795132800);
  EXPECT_EQ(parseRetryAfter("Wed, 21 Oct 1007 07:28:00 GMT", now), std::nullopt);
  EXPECT_EQ(parseRetryAfter("Fri, 31 Dec 9999 23:59:59 GMT", now), std::chrono::seconds(86400));
}

TEST(AcmeProblem, RetryAfterForms) {
  auto now = std::chrono::system_clock::from_time_t(784111777);  // Sun, 06 Nov 1994 08:49:37 GMT
  EXPECT_EQ(parseRetryAfter("30", now), std::chrono::seconds(30));
  EXPECT_EQ(parseRetryAfter("Sun, 06 Nov 1994 08:50:37 GMT", now), std::chrono::seconds(60));
  EXPECT_EQ(parseRetryAfter("Sun, 06 Nov 1994 08:40:37 GMT", now), std::nullopt);  // past: none
}

TEST(AcmeProblem, RetryAfterIsBoundedToOneSecondUpToADay) {
  auto now = std::chrono::system_clock::from_time_t(784111777);
  EXPECT_EQ(parseRetryAfter("0", now), std::nullopt);  // not "at once": the caller's own schedule
  EXPECT_EQ(parseRetryAfter("00", now), std::nullopt);
  EXPECT_EQ(parseRetryAfter("1", now), std::chrono::seconds(1));
  EXPECT_EQ(parseRetryAfter("86400", now), std::chrono::seconds(86400));
  EXPECT_EQ(parseRetryAfter("86401", now), std::chrono::seconds(86400));
  EXPECT_EQ(parseRetryAfter("999999999", now), std::chrono::seconds(86400));      // 31 years asked
  EXPECT_EQ(parseRetryAfter("99999999999999999999", now), std::chrono::seconds(86400));
  EXPECT_EQ(parseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now), std::nullopt);  // now: none
  EXPECT_EQ(parseRetryAfter("Mon, 07 Nov 1994 08:49:38 GMT", now), std::chrono::seconds(86400));
  EXPECT_EQ(parseRetryAfter("soon", now), std::nullopt);
  EXPECT_EQ(parseRetryAfter("", now), std::nullopt);
}

}  // namespace
}  // namespace kms::acme
