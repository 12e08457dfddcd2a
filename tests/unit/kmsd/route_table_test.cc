// The control API's route table: patterns, parameters, 404 and 405.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "control/route_table.h"

namespace kms::daemon {
namespace {

ControlRequest request(std::string method, std::string target) {
  ControlRequest r;
  r.method = std::move(method);
  r.target = std::move(target);
  return r;
}

struct Answer {
  ControlResponse response;
  nlohmann::json body;
};

Answer call(const RouteTable& t, const std::string& method, const std::string& target) {
  Answer a;
  t.dispatch(request(method, target), [&](ControlResponse r) { a.response = std::move(r); });
  a.body = nlohmann::json::parse(a.response.body, nullptr, false);
  return a;
}

RouteTable table(std::string* seen) {
  RouteTable t;
  t.add("GET", "/v1/certificates", [seen](const ControlRequest&, const RouteMatch& m, const http::Reply& reply) {
    *seen = "list " + m.query;
    reply(jsonBody(200, "{}"));
  });
  t.add("GET", "/v1/certificates/{name}", [seen](const ControlRequest&, const RouteMatch& m, const http::Reply& reply) {
    *seen = "get " + m.param("name");
    reply(jsonBody(200, "{}"));
  });
  t.add("POST", "/v1/certificates/{name}/renew",
        [seen](const ControlRequest&, const RouteMatch& m, const http::Reply& reply) {
          *seen = "renew " + m.param("name");
          reply(jsonBody(202, "{}"));
        });
  return t;
}

TEST(RouteTable, PatternsMatchWholeSegmentsAndNameTheirParameters) {
  std::string seen;
  RouteTable t = table(&seen);
  EXPECT_EQ(call(t, "GET", "/v1/certificates?since=3").response.status, 200);
  EXPECT_EQ(seen, "list since=3");
  EXPECT_EQ(call(t, "GET", "/v1/certificates/main").response.status, 200);
  EXPECT_EQ(seen, "get main");
  EXPECT_EQ(call(t, "POST", "//v1/certificates/web//renew").response.status, 202);  // empty segments ignored
  EXPECT_EQ(seen, "renew web");
}

TEST(RouteTable, AnUnknownPathIsANotFoundProblem) {
  std::string seen;
  RouteTable t = table(&seen);
  for (const char* target : {"/", "/v1", "/v1/certificates/main/renew/now", "/v2/certificates"}) {
    Answer a = call(t, "GET", target);
    EXPECT_EQ(a.response.status, 404) << target;
    EXPECT_EQ(a.response.contentType, "application/problem+json");
    ASSERT_TRUE(a.body.is_object()) << a.response.body;
    EXPECT_EQ(a.body["status"], 404);
    EXPECT_EQ(a.body["detail"], target);
  }
  EXPECT_TRUE(seen.empty());
}

TEST(RouteTable, AKnownPathWithAnotherMethodNamesTheAllowedOnes) {
  std::string seen;
  RouteTable t = table(&seen);
  Answer a = call(t, "DELETE", "/v1/certificates/main/renew");
  EXPECT_EQ(a.response.status, 405);
  ASSERT_TRUE(a.body.is_object());
  EXPECT_EQ(a.body["title"], "method not allowed");
  EXPECT_EQ(a.body["detail"], "DELETE /v1/certificates/main/renew (allowed: POST)");
  EXPECT_TRUE(seen.empty());
}

TEST(RouteTable, ListsItsRoutes) {
  std::string seen;
  EXPECT_EQ(table(&seen).list(), (std::vector<std::string>{"GET /v1/certificates", "GET /v1/certificates/{name}",
                                                           "POST /v1/certificates/{name}/renew"}));
}

}  // namespace
}  // namespace kms::daemon
