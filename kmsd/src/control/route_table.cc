#include "control/route_table.h"

namespace kms::daemon {

std::vector<std::string> pathSegments(const std::string& target, std::string* query) {
  const std::string path = target.substr(0, target.find('?'));
  if (query != nullptr) {
    *query = target.size() > path.size() ? target.substr(path.size() + 1) : std::string();
  }
  std::vector<std::string> parts;
  std::size_t i = 0;
  while (i < path.size()) {
    std::size_t j = path.find('/', i);
    if (j == std::string::npos) {
      j = path.size();
    }
    if (j > i) {
      parts.push_back(path.substr(i, j - i));
    }
    i = j + 1;
  }
  return parts;
}

void RouteTable::add(std::string method, const std::string& pattern, RouteHandler handler) {
  routes_.push_back(Route{std::move(method), pattern, pathSegments(pattern, nullptr), std::move(handler)});
}

namespace {

bool matches(const std::vector<std::string>& pattern, const std::vector<std::string>& path, RouteMatch& out) {
  if (pattern.size() != path.size()) {
    return false;
  }
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const std::string& p = pattern[i];
    if (p.size() > 2 && p.front() == '{' && p.back() == '}') {
      out.params[p.substr(1, p.size() - 2)] = path[i];
    } else if (p != path[i]) {
      return false;
    }
  }
  return true;
}

}  // namespace

void RouteTable::dispatch(const ControlRequest& req, const http::Reply& reply) const {
  RouteMatch match;
  const auto path = pathSegments(req.target, &match.query);
  std::string allowed;
  for (const Route& r : routes_) {
    RouteMatch m;
    if (!matches(r.segments, path, m)) {
      continue;
    }
    if (r.method == req.method) {
      m.query = match.query;
      return r.handler(req, m, reply);
    }
    allowed += (allowed.empty() ? "" : ", ") + r.method;
  }
  if (!allowed.empty()) {
    return reply(problem(405, "method not allowed", req.method + " " + req.target + " (allowed: " + allowed + ")"));
  }
  reply(problem(404, "not found", req.target));
}

std::vector<std::string> RouteTable::list() const {
  std::vector<std::string> out;
  out.reserve(routes_.size());
  for (const Route& r : routes_) {
    out.push_back(r.method + " " + r.pattern);
  }
  return out;
}

}  // namespace kms::daemon
