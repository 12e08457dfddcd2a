#pragma once
// The control API's routes as a table of (method, path pattern, handler). A pattern names
// its variable segments in braces: "/v1/certificates/{name}/renew". A path no pattern
// matches is 404; a path matched with another method is 405 naming the allowed ones.

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "control/control_api.h"

namespace kms::daemon {

/// The segments a pattern's braces matched ("name" -> "main"), and the query string.
struct RouteMatch {
  std::map<std::string, std::string> params;
  std::string query;
  [[nodiscard]] const std::string& param(const std::string& name) const { return params.at(name); }
};

using RouteHandler = std::function<void(const ControlRequest&, const RouteMatch&, const http::Reply&)>;

class RouteTable {
 public:
  void add(std::string method, const std::string& pattern, RouteHandler handler);
  /// Runs the handler of the route `req` matches, or replies 404 / 405.
  void dispatch(const ControlRequest& req, const http::Reply& reply) const;
  /// Every route as "METHOD /pattern", in the order added (for tests and docs).
  [[nodiscard]] std::vector<std::string> list() const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    RouteHandler handler;
  };
  std::vector<Route> routes_;
};

/// "/v1/certificates/main?x=1" -> {"v1","certificates","main"}; the query in `query`.
[[nodiscard]] std::vector<std::string> pathSegments(const std::string& target, std::string* query);

}  // namespace kms::daemon
