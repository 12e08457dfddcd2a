// What the ACME client does with answers no local ACME server can be made to give:
// ARI windows (Debian's Pebble has no ARI), malformed or oversized bodies, wrong media
// types, persistent badNonce, 503 with Retry-After. The server is real (HTTP over
// loopback); its answers are recorded.
#include <gtest/gtest.h>

#include "must.h"
#include "acme/client.h"
#include "acme/jws.h"
#include "pki/jose.h"
#include "recorded_server.h"

namespace kms::acme {
namespace {

using namespace std::chrono_literals;
using test::RecordedServer;

std::string route(const std::string& key, int status, const std::string& contentType, const std::string& body,
                  const std::string& extraHeaders = "") {
  std::string escaped;
  for (char c : body) {
    if (c == '"' || c == '\\') {
      escaped += '\\';
    }
    escaped += c;
  }
  return "\"" + key + "\":{\"status\":" + std::to_string(status) + ",\"headers\":{\"Content-Type\":\"" + contentType +
         "\"" + extraHeaders + "},\"body\":\"" + escaped + "\"}";
}

const std::string kDirectory =
    R"({"newNonce":"http://127.0.0.1:@PORT@/nonce","newAccount":"http://127.0.0.1:@PORT@/new-account",)"
    R"("newOrder":"http://127.0.0.1:@PORT@/new-order","revokeCert":"http://127.0.0.1:@PORT@/revoke",)"
    R"("keyChange":"http://127.0.0.1:@PORT@/key-change","renewalInfo":"http://127.0.0.1:@PORT@/ari"})";

std::unique_ptr<Transport> transport(std::size_t maxBody = 1 << 20) {
  http::TransportOptions o;
  o.maxBodyBytes = maxBody;
  return test::must(http::makeCurlTransport(o));  // an error fails the test, never a dereference
}

TEST(AcmeRecorded, RenewalInfoWindowAndRetryAfterClamps) {
  RecordedServer server(
      "{" + route("GET /dir", 200, "application/json", kDirectory) + "," +
      route("GET /ari/aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE", 200, "application/json",
            R"({"suggestedWindow":{"start":"2026-11-20T00:00:00Z","end":"2026-11-22T00:00:00Z"},)"
            R"("explanationURL":"https://ca.example/why"})",
            ",\"Retry-After\":\"30\"") +
      "," +
      route("GET /ari/long", 200, "application/json",
            R"({"suggestedWindow":{"start":"2026-11-20T00:00:00.5+01:00","end":"2026-11-21T00:00:00Z"}})",
            ",\"Retry-After\":\"604800\"") +
      "," +
      route("GET /ari/none", 200, "application/json",
            R"({"suggestedWindow":{"start":"2026-11-20T00:00:00Z","end":"2026-11-21T00:00:00Z"}})") +
      "," +
      route("GET /ari/backwards", 200, "application/json",
            R"({"suggestedWindow":{"start":"2026-11-22T00:00:00Z","end":"2026-11-21T00:00:00Z"}})") +
      "}");
  auto t = transport();
  auto client = AcmeClient::create(*t, ClientOptions{server.url("/dir")});
  ASSERT_TRUE(client.has_value()) << client.error().toString();
  ASSERT_TRUE((*client)->directory().renewalInfo.has_value());

  auto info = (*client)->renewalInfo("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
  ASSERT_TRUE(info.has_value()) << info.error().toString();
  EXPECT_EQ(std::chrono::system_clock::to_time_t(info->windowStart), 1795132800);  // 2026-11-20T00:00:00Z
  EXPECT_EQ(std::chrono::system_clock::to_time_t(info->windowEnd), 1795305600);
  EXPECT_EQ(info->explanationUrl, std::optional<std::string>("https://ca.example/why"));
  EXPECT_EQ(info->retryAfter, 60s);  // 30 s clamped up to a minute

  auto longer = (*client)->renewalInfo("long");
  ASSERT_TRUE(longer.has_value()) << longer.error().toString();
  EXPECT_EQ(longer->retryAfter, 86400s);  // a week clamped down to a day
  EXPECT_EQ(std::chrono::system_clock::to_time_t(longer->windowStart), 1795132800 - 3600);
  EXPECT_EQ((*client)->renewalInfo("none")->retryAfter, 21600s);  // absent: 6 h

  auto backwards = (*client)->renewalInfo("backwards");
  ASSERT_FALSE(backwards.has_value());
  EXPECT_EQ(backwards.error().message, "suggestedWindow end is not after its start");
  auto missing = (*client)->renewalInfo("unknown");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().native, 404);
}

TEST(AcmeRecorded, RenewalTimePicker) {
  RenewalInfo info;
  info.windowStart = std::chrono::system_clock::from_time_t(1000);
  info.windowEnd = std::chrono::system_clock::from_time_t(2000);
  auto at = [](std::time_t t) { return std::chrono::system_clock::from_time_t(t); };
  EXPECT_EQ(pickRenewalTime(info, at(0), 0), at(1000));
  EXPECT_EQ(pickRenewalTime(info, at(0), 999), at(1999));
  EXPECT_EQ(pickRenewalTime(info, at(0), 1000), at(1000));  // wraps inside [start, end)
  EXPECT_EQ(pickRenewalTime(info, at(1500), 7), at(1507));  // never in the past
  EXPECT_EQ(pickRenewalTime(info, at(2500), 7), at(2500));  // window passed: now
}

TEST(AcmeRecorded, NoRenewalInfoInTheDirectoryIsUnsupported) {
  RecordedServer server(
      "{" + route("GET /dir", 200, "application/json", R"({"newNonce":"n","newAccount":"a","newOrder":"o"})") + "}");
  auto t = transport();
  auto client = AcmeClient::create(*t, ClientOptions{server.url("/dir")});
  ASSERT_TRUE(client.has_value());
  auto info = (*client)->renewalInfo("x.y");
  ASSERT_FALSE(info.has_value());
  EXPECT_EQ(info.error().code, Errc::unsupported);
}

TEST(AcmeRecorded, MalformedDirectoriesAreClearErrors) {
  RecordedServer server("{" + route("GET /garbage", 200, "application/json", "{not json") + "," +
                        route("GET /partial", 200, "application/json", R"({"newNonce":"n","newOrder":"o"})") + "," +
                        route("GET /busy", 503, "application/problem+json",
                              R"({"type":"urn:ietf:params:acme:error:serverInternal","detail":"maintenance"})",
                              ",\"Retry-After\":\"120\"") +
                        "}");
  auto t = transport();
  auto garbage = AcmeClient::create(*t, ClientOptions{server.url("/garbage")});
  ASSERT_FALSE(garbage.has_value());
  EXPECT_EQ(garbage.error().toString(), server.url("/garbage") + ": ACME directory is not a JSON object");
  EXPECT_EQ(garbage.error().disposition, Disposition::retry);

  auto partial = AcmeClient::create(*t, ClientOptions{server.url("/partial")});
  ASSERT_FALSE(partial.has_value());
  EXPECT_EQ(partial.error().message, "ACME directory has no string member 'newAccount'");

  auto busy = AcmeClient::create(*t, ClientOptions{server.url("/busy")});
  ASSERT_FALSE(busy.has_value());
  EXPECT_EQ(busy.error().disposition, Disposition::caPause);  // 503 with Retry-After
  EXPECT_EQ(busy.error().retryAfter, std::optional<std::chrono::seconds>(120s));
  EXPECT_EQ(busy.error().message, "ACME serverInternal: maintenance");
}

TEST(AcmeRecorded, OversizedBodyIsCapped) {
  RecordedServer server(
      "{\"GET /big\":{\"status\":200,\"headers\":{\"Content-Type\":\"application/json\"},"
      "\"body\":\"xxxxxxxxxxxxxxxx\",\"body_repeat\":8192}}");
  auto t = transport(64 * 1024);
  auto client = AcmeClient::create(*t, ClientOptions{server.url("/big")});
  ASSERT_FALSE(client.has_value());
  EXPECT_EQ(client.error().code, Errc::protocol);
  EXPECT_EQ(client.error().disposition, Disposition::retry);
}

const std::string kNonceRoute = "\"HEAD /nonce\":{\"status\":200,\"headers\":{\"Replay-Nonce\":\"abc\"},\"body\":\"\"}";

TEST(AcmeRecorded, WrongMediaTypeAndPersistentBadNonce) {
  RecordedServer server("{" + route("GET /dir", 200, "application/json", kDirectory) + "," + kNonceRoute + "," +
                        route("POST /new-account", 201, "text/html", "<html>hello</html>",
                              ",\"Location\":\"http://127.0.0.1:@PORT@/acct/1\",\"Replay-Nonce\":\"n2\"") +
                        "," +
                        route("POST /new-order", 400, "application/problem+json",
                              R"({"type":"urn:ietf:params:acme:error:badNonce","detail":"stale nonce"})",
                              ",\"Replay-Nonce\":\"n3\"") +
                        "}");
  auto t = transport();
  ClientOptions options{server.url("/dir")};
  options.maxBadNonceRetries = 3;
  auto client = AcmeClient::create(*t, options);
  ASSERT_TRUE(client.has_value()) << client.error().toString();
  auto key = *pki::SoftwareKey::generate();
  auto account = (*client)->newAccount(*key, {});
  ASSERT_FALSE(account.has_value());
  EXPECT_EQ(account.error().message, "expected application/json, got 'text/html' (HTTP 201)");
  EXPECT_EQ(account.error().disposition, Disposition::retry);

  auto order = (*client)->newOrder(AccountRef{*key, server.url("/acct/1")}, {{"dns", "x.example"}});
  ASSERT_FALSE(order.has_value());
  EXPECT_EQ(order.error().nativeName, "badNonce");
  EXPECT_EQ(order.error().disposition, Disposition::retry);
  EXPECT_EQ((*client)->badNonceRetries(), 3U);
}

TEST(AcmeRecorded, OrderWithoutLocationOrWithBadFieldsIsRefused) {
  RecordedServer server(
      "{" + route("GET /dir", 200, "application/json", kDirectory) + "," + kNonceRoute + "," +
      route("POST /new-order", 201, "application/json",
            R"({"status":"pending","identifiers":[{"type":"dns","value":"x"}],"authorizations":"nope","finalize":"f"})",
            ",\"Location\":\"http://127.0.0.1:@PORT@/order/1\"") +
      "}");
  auto t = transport();
  auto client = AcmeClient::create(*t, ClientOptions{server.url("/dir")});
  ASSERT_TRUE(client.has_value());
  auto key = *pki::SoftwareKey::generate();
  auto order = (*client)->newOrder(AccountRef{*key, "acct"}, {{"dns", "x"}});
  ASSERT_FALSE(order.has_value());
  EXPECT_EQ(order.error().message, "ACME order member 'authorizations' is not an array");
  EXPECT_EQ(order.error().context, server.url("/order/1"));
}

TEST(AcmeRecorded, DeepOrWideJsonIsRefusedBeforeItIsParsed) {
  // ~800 KB nested 400,000 levels (under the 1 MiB body cap): parsed or re-serialized
  // recursively it would overflow the stack. And a million members.
  const std::string deep = "{\"suggestedWindow\":" + std::string(400000, '[') + std::string(400000, ']') + "}";
  std::string wide = "{";
  for (int i = 0; i < 1000000; ++i) {
    wide += "\"k\":0,";
  }
  wide += R"("suggestedWindow":{"start":"2026-11-20T00:00:00Z","end":"2026-11-21T00:00:00Z"}})";
  const std::string deepProblem = "{\"type\":\"urn:ietf:params:acme:error:malformed\",\"subproblems\":" +
                                  std::string(400000, '[') + std::string(400000, ']') + "}";
  RecordedServer server("{" + route("GET /dir", 200, "application/json", kDirectory) + "," +
                        route("GET /ari/deep", 200, "application/json", deep) + "," +
                        route("GET /ari/wide", 200, "application/json", wide) + "," +
                        route("GET /ari/problem", 400, "application/problem+json", deepProblem) + "}");
  auto t = transport(16 << 20);
  auto client = AcmeClient::create(*t, ClientOptions{server.url("/dir")});
  ASSERT_TRUE(client.has_value()) << client.error().toString();
  auto d = (*client)->renewalInfo("deep");
  ASSERT_FALSE(d.has_value());
  EXPECT_EQ(d.error().code, Errc::protocol);
  EXPECT_NE(d.error().message.find("JSON nested deeper than 32 levels"), std::string::npos) << d.error().toString();
  auto w = (*client)->renewalInfo("wide");
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().code, Errc::protocol);
  EXPECT_NE(w.error().message.find("JSON holds more than 100000 values"), std::string::npos) << w.error().toString();
  auto p = (*client)->renewalInfo("problem");
  ASSERT_FALSE(p.has_value());  // an error all the same, read as no problem document
  EXPECT_EQ(p.error().native, 400);
}

TEST(AcmeRecorded, UrlsOffTheDirectorysOriginAreRefusedUnsent) {
  // newNonce on another loopback address (nothing listens there: had a request been sent,
  // the error would be a connection failure), renewalInfo a file: URL.
  const std::string evil =
      R"({"newNonce":"http://127.0.0.2:@PORT@/nonce","newAccount":"http://127.0.0.1:@PORT@/new-account",)"
      R"("newOrder":"http://127.0.0.1:@PORT@/new-order","revokeCert":"http://127.0.0.1:@PORT@/revoke",)"
      R"("keyChange":"http://127.0.0.1:@PORT@/key-change","renewalInfo":"file:///etc/passwd"})";
  RecordedServer server("{" + route("GET /dir", 200, "application/json", evil) + "}");
  auto t = transport();
  auto client = AcmeClient::create(*t, ClientOptions{server.url("/dir")});
  ASSERT_TRUE(client.has_value()) << client.error().toString();
  const std::string origin = server.url("");
  auto info = (*client)->renewalInfo("x");
  ASSERT_FALSE(info.has_value());
  EXPECT_EQ(info.error().code, Errc::protocol);
  EXPECT_EQ(info.error().message,
            "refusing a URL from the CA that is not on the directory's origin " + origin + ": file:///etc/passwd/x");
  auto key = *pki::SoftwareKey::generate();
  auto account = (*client)->newAccount(*key, {});
  ASSERT_FALSE(account.has_value());
  EXPECT_EQ(account.error().code, Errc::protocol) << account.error().toString();
  EXPECT_NE(account.error().message.find("not on the directory's origin " + origin + ": http://127.0.0.2:"),
            std::string::npos)
      << account.error().toString();
}

TEST(AcmeRecorded, AtMostFourAlternateChainsAreRead) {
  std::string links;
  for (int i = 1; i <= 6; ++i) {
    links += std::string(i > 1 ? ", " : "") + "<http://127.0.0.1:@PORT@/alt/" + std::to_string(i) + ">;rel=\\\"alternate\\\"";
  }
  RecordedServer server("{" + route("GET /dir", 200, "application/json", kDirectory) + "," +
                        route("HEAD /nonce", 200, "text/plain", "", ",\"Replay-Nonce\":\"n1\"") + "," +
                        route("POST /cert", 200, "application/pem-certificate-chain", "PEM",
                              ",\"Replay-Nonce\":\"n2\",\"Link\":\"" + links + "\"") +
                        "}");
  auto t = transport();
  auto client = AcmeClient::create(*t, ClientOptions{server.url("/dir")});
  ASSERT_TRUE(client.has_value()) << client.error().toString();
  auto key = *pki::SoftwareKey::generate();
  auto chain = (*client)->downloadCertificate(AccountRef{*key, server.url("/acct/1")}, server.url("/cert"));
  ASSERT_TRUE(chain.has_value()) << chain.error().toString();
  ASSERT_EQ(chain->alternates.size(), 4U);  // a CA offering more gets no more requests
  EXPECT_EQ(chain->alternates.front(), server.url("/alt/1"));
  EXPECT_EQ(chain->alternates.back(), server.url("/alt/4"));
}

// The recorded server holds what it is sent to RFC 8555 §6.2 (recorded_server.py); the
// tests below show that the client passes and that each broken rule is caught.

TEST(AcmeRecorded, ClientRequestsPassTheServersJwsChecks) {
  // The HEAD route sets no Replay-Nonce: the server's own fresh nonces are used. The
  // deactivation is signed by kid, checked with the key newAccount's Location taught.
  RecordedServer server("{\"_options\":{\"verify_kid\":true}," +
                        route("GET /dir", 200, "application/json", kDirectory) + "," +
                        route("HEAD /nonce", 200, "text/plain", "") + "," +
                        route("POST /new-account", 201, "application/json", R"({"status":"valid"})",
                              ",\"Location\":\"http://127.0.0.1:@PORT@/acct/1\"") +
                        "," + route("POST /acct/1", 200, "application/json", R"({"status":"deactivated"})") + "}");
  auto t = transport();
  auto client = AcmeClient::create(*t, ClientOptions{server.url("/dir")});
  ASSERT_TRUE(client.has_value()) << client.error().toString();
  auto key = *pki::SoftwareKey::generate();
  auto account = (*client)->newAccount(*key, {"mailto:ops@example.org"});
  ASSERT_TRUE(account.has_value()) << account.error().toString();
  EXPECT_EQ(account->url, server.url("/acct/1"));
  auto deactivated = (*client)->deactivate(AccountRef{*key, account->url});
  ASSERT_TRUE(deactivated.has_value()) << deactivated.error().toString();
  EXPECT_EQ(deactivated->status, "deactivated");
  EXPECT_EQ(server.violations(), std::vector<std::string>{});
  EXPECT_EQ((*client)->badNonceRetries(), 0U);
}

/// A flattened JWS built by hand, so that the header can say anything: `signer` signs,
/// whatever key the header names.
std::string handMadeJws(pki::Signer& signer, const std::string& protectedJson, const std::string& payload) {
  const std::string input = pki::jwsSigningInput(protectedJson, payload);
  auto sig = signer.signMessage(pki::asBytes(input));
  EXPECT_TRUE(sig.has_value());
  const std::size_t dot = input.find('.');
  return R"({"protected":")" + input.substr(0, dot) + R"(","payload":")" + input.substr(dot + 1) +
         R"(","signature":")" + (sig ? pki::base64UrlEncode(*sig) : "") + "\"}";
}

TEST(AcmeRecorded, RequestsBreakingTheJwsRulesAreRefusedAndReported) {
  auto key = *pki::SoftwareKey::generate();
  auto other = *pki::SoftwareKey::generate();
  RecordedServer server("{\"_options\":{\"verify_kid\":true,\"accounts\":{\"http://127.0.0.1:@PORT@/acct/1\":" +
                        key->publicKey().jwkJson() + "}}," + route("HEAD /nonce", 200, "text/plain", "") + "," +
                        route("POST /new-account", 201, "application/json", R"({"status":"valid"})") + "}");
  auto t = transport();
  const std::string target = server.url("/new-account");
  auto nonce = [&] {
    auto r = t->send(HttpRequest{"HEAD", server.url("/nonce"), {}, {}});
    EXPECT_TRUE(r.has_value() && r->header("replay-nonce").has_value());
    return r ? r->header("replay-nonce").value_or("") : std::string();
  };
  auto post = [&](const std::string& body, const std::string& contentType = "application/jose+json") {
    auto r = t->send(HttpRequest{"POST", target, {{"Content-Type", contentType}}, body});
    EXPECT_TRUE(r.has_value()) << r.error().toString();
    return r ? *r : HttpResponse{};
  };
  auto jws = [&](pki::Signer& signer, const std::string& url, const std::string& n, const std::string& kid = "") {
    auto body = signRequest(signer, url, n, kid, "{}");
    EXPECT_TRUE(body.has_value());
    return body.value_or("");
  };
  // Refused with a problem of `type` (and a fresh nonce to retry with), reported as `what`.
  auto refused = [&](const HttpResponse& r, const std::string& type, const std::string& what) {
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(r.header("content-type"), std::optional<std::string>("application/problem+json"));
    EXPECT_NE(r.body.find("\"urn:ietf:params:acme:error:" + type + "\""), std::string::npos) << r.body;
    EXPECT_TRUE(r.header("replay-nonce").has_value());
    auto seen = server.violations();
    ASSERT_FALSE(seen.empty());
    EXPECT_EQ(seen.back(), "POST /new-account: " + what);
  };

  // Proper, in both forms: the route answers and nothing is reported.
  EXPECT_EQ(post(jws(*key, target, nonce())).status, 201);
  EXPECT_EQ(post(jws(*key, target, nonce(), server.url("/acct/1"))).status, 201);
  EXPECT_EQ(server.violations(), std::vector<std::string>{});

  refused(post(jws(*key, server.url("/elsewhere"), nonce())), "malformed",
          "url \"" + server.url("/elsewhere") + "\" is not the URL the request was sent to, \"" + target + "\"");
  refused(post(jws(*key, target, "made-up")), "badNonce", "nonce \"made-up\" was never issued by this server");
  const std::string once = nonce();
  const std::string replayed = jws(*key, target, once);
  EXPECT_EQ(post(replayed).status, 201);
  refused(post(replayed), "badNonce", "nonce \"" + once + "\" was already used");

  // The header names `key`, `other` signs; then `other` signs for the account of `key`.
  const std::string header = R"({"alg":"ES256","jwk":)" + key->publicKey().jwkJson() + R"(,"nonce":")" + nonce() +
                             R"(","url":")" + target + "\"}";
  refused(post(handMadeJws(*other, header, "{}")), "malformed", "signature does not verify with the jwk");
  refused(post(jws(*other, target, nonce(), server.url("/acct/1"))), "malformed",
          "signature does not verify with the key of kid \"" + server.url("/acct/1") + "\"");
  refused(post(jws(*key, target, nonce(), server.url("/acct/2"))), "malformed",
          "kid \"" + server.url("/acct/2") + "\" is not an account this server knows");

  refused(post("hello"), "malformed", "body is not a flattened JWS: not JSON");
  refused(post(jws(*key, target, nonce()), "application/json"), "malformed",
          "Content-Type is \"application/json\", not application/jose+json");
  EXPECT_EQ(server.violations().size(), 8U);
}

TEST(AcmeRecorded, ARouteFixedNonceComesBackOncePerSending) {
  RecordedServer server("{" + kNonceRoute + "," + route("POST /new-account", 201, "application/json", "{}") + "}");
  auto t = transport();
  auto key = *pki::SoftwareKey::generate();
  auto post = [&] {
    auto body = signRequest(*key, server.url("/new-account"), "abc", "", "");
    EXPECT_TRUE(body.has_value());
    auto r = t->send(HttpRequest{
        "POST", server.url("/new-account"), {{"Content-Type", "application/jose+json"}}, body.value_or("")});
    EXPECT_TRUE(r.has_value());
    return r ? r->status : 0;
  };
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(t->send(HttpRequest{"HEAD", server.url("/nonce"), {}, {}}).has_value());
  }
  EXPECT_EQ(post(), 201);
  EXPECT_EQ(post(), 201);
  EXPECT_EQ(post(), 400);  // "abc" was handed out twice
  EXPECT_EQ(server.violations(), std::vector<std::string>{"POST /new-account: nonce \"abc\" was already used"});
}

}  // namespace
}  // namespace kms::acme
