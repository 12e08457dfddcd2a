#pragma once
// The Prometheus text exposition format (version 0.0.4), written line by line: a family's
// HELP and TYPE, then its samples. Label values and HELP text are escaped as the format says.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kms::daemon {

class Exposition {
 public:
  using Labels = std::vector<std::pair<std::string_view, std::string_view>>;
  /// The Content-Type of what text() holds.
  static constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

  /// `# HELP name help` and `# TYPE name type` ("counter", "gauge", "histogram").
  void family(std::string_view name, std::string_view type, std::string_view help);
  /// `name{labels} value`; integers are written without a fraction.
  void sample(std::string_view name, const Labels& labels, std::int64_t value);
  void sample(std::string_view name, const Labels& labels, double value);
  /// A histogram's samples: `name_bucket` for each upper bound in `bounds` (seconds) with the
  /// cumulative count under it, `le="+Inf"` with `count`, then `name_sum` and `name_count`;
  /// `labels` go on each, before `le`.
  void histogram(std::string_view name, const Labels& labels, std::span<const double> bounds,
                 std::span<const std::uint64_t> cumulative, std::uint64_t count, double sum);
  [[nodiscard]] const std::string& text() const { return out_; }

 private:
  void head(std::string_view name, const Labels& labels);
  std::string out_;
};

/// A label value or HELP text escaped: backslash and newline (and, in a label value, the
/// double quote).
[[nodiscard]] std::string escapeLabelValue(std::string_view value);
[[nodiscard]] std::string escapeHelp(std::string_view help);

}  // namespace kms::daemon
