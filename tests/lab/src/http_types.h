#pragma once
/// @file The HTTP request/reply the services see; the Beast server converts to and from them.

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace kms::lab {

struct LabRequest {
  std::string method;                          ///< GET, HEAD, POST
  std::string path;                            ///< without the query
  std::string query;                           ///< after '?', may be empty
  std::map<std::string, std::string> headers;  ///< names lower-cased
  std::string body;
  std::string remoteAddress;  ///< client IP

  /// Header value ("" when absent); name in lower case.
  [[nodiscard]] std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct LabReply {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  LabReply& with(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }

  static LabReply json(int status, const nlohmann::json& body, const std::string& contentType = "application/json") {
    LabReply r{status, {{"Content-Type", contentType}}, body.dump()};
    return r;
  }
  static LabReply bytes(int status, std::string body, const std::string& contentType) {
    LabReply r{status, {{"Content-Type", contentType}}, std::move(body)};
    return r;
  }
};

}  // namespace kms::lab
