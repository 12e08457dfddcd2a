#include "metrics/exposition.h"

#include <cmath>
#include <cstdio>

namespace kms::daemon {
namespace {

std::string escaped(std::string_view text, bool quote) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string escapeLabelValue(std::string_view value) {
  return escaped(value, true);
}

std::string escapeHelp(std::string_view help) {
  return escaped(help, false);
}

void Exposition::family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += escapeHelp(help);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void Exposition::head(std::string_view name, const Labels& labels) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    bool first = true;
    for (const auto& [key, value] : labels) {
      if (!first) {
        out_ += ',';
      }
      first = false;
      out_ += key;
      out_ += "=\"";
      out_ += escapeLabelValue(value);
      out_ += '"';
    }
    out_ += '}';
  }
  out_ += ' ';
}

void Exposition::sample(std::string_view name, const Labels& labels, std::int64_t value) {
  head(name, labels);
  out_ += std::to_string(value);
  out_ += '\n';
}

void Exposition::sample(std::string_view name, const Labels& labels, double value) {
  head(name, labels);
  if (std::isnan(value)) {
    out_ += "NaN";
  } else if (std::isinf(value)) {
    out_ += value > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[32];
    (void)std::snprintf(buf, sizeof buf, "%.17g", value);
    out_ += buf;
  }
  out_ += '\n';
}

void Exposition::histogram(std::string_view name, const Labels& labels, std::span<const double> bounds,
                           std::span<const std::uint64_t> cumulative, std::uint64_t count, double sum) {
  const std::string bucket = std::string(name) + "_bucket";
  Labels withLe = labels;
  withLe.emplace_back("le", "");
  char le[32];
  for (std::size_t i = 0; i < bounds.size() && i < cumulative.size(); ++i) {
    (void)std::snprintf(le, sizeof le, "%g", bounds[i]);
    withLe.back().second = le;
    sample(bucket, withLe, static_cast<std::int64_t>(cumulative[i]));
  }
  withLe.back().second = "+Inf";
  sample(bucket, withLe, static_cast<std::int64_t>(count));
  sample(std::string(name) + "_sum", labels, sum);
  sample(std::string(name) + "_count", labels, static_cast<std::int64_t>(count));
}

}  // namespace kms::daemon
