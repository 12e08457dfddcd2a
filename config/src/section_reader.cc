#include "section_reader.h"

#include <functional>

#include "checks.h"

namespace kms::config::detail {
namespace {

bool matchesKind(const toml::node& node, Kind kind) {
  switch (kind) {
    case Kind::string:
      return node.is_string();
    case Kind::integer:
      return node.is_integer();
    case Kind::number:
      return node.is_number();
    case Kind::boolean:
      return node.is_boolean();
    case Kind::stringArray:
      return node.is_array();
    case Kind::tableArray:
      return node.is_array_of_tables();
  }
  return false;
}

}  // namespace

const char* typeName(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return "string";
    case toml::node_type::integer:
      return "integer";
    case toml::node_type::floating_point:
      return "float";
    case toml::node_type::boolean:
      return "boolean";
    case toml::node_type::date:
      return "date";
    case toml::node_type::time:
      return "time";
    case toml::node_type::date_time:
      return "date-time";
    case toml::node_type::array:
      return "array";
    case toml::node_type::table:
      return "table";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

SectionReader::SectionReader(Loader& loader, toml::table& table, std::string label, std::string_view schema)
    : loader_(loader), table_(table), label_(std::move(label)), schema_(schema), header_(loader.headerOf(table)) {}

void SectionReader::checkKeysAndApplyDefaults() {
  for (auto&& [key, value] : table_) {
    const Setting* setting = findSetting(schema_, key.str());
    if (setting == nullptr) {
      loader_.report(loader_.keyPosition(key), label_, std::string(key.str()), "unknown key");
      continue;
    }
    if (!matchesKind(value, setting->kind)) {
      loader_.report(loader_.positionOf(&value, header_), label_, std::string(key.str()),
                     std::string("expected ") + kindName(setting->kind) + ", got " + typeName(value));
      continue;
    }
    if (const toml::array* array = value.as_array(); array != nullptr && setting->kind == Kind::stringArray) {
      for (std::size_t i = 0; i < array->size(); ++i) {
        const toml::node& element = *array->get(i);
        if (!element.is_string()) {
          loader_.report(loader_.positionOf(&element, header_), label_,
                         std::string(key.str()) + "[" + std::to_string(i) + "]",
                         std::string("expected a string, got ") + typeName(element));
        }
      }
    }
  }
  for (const Setting& setting : settings()) {
    if (setting.section != schema_ || setting.defaultText.empty() || has(setting.key)) {
      continue;
    }
    std::string error;
    const toml::node* added = setFromText(table_, setting.key, setting.kind, setting.defaultText, error);
    if (added != nullptr) {
      loader_.markDefault(added);
    }
  }
}

const toml::node* SectionReader::present(std::string_view key, Need need) {
  const toml::node* found = table_.get(key);
  if (found == nullptr && need == Need::required) {
    missing(key);
  }
  return found;
}

std::optional<std::string> SectionReader::string(std::string_view key, Need need) {
  const toml::node* found = present(key, need);
  if (found == nullptr || !found->is_string()) {
    return std::nullopt;  // a wrong type was reported by checkKeysAndApplyDefaults
  }
  const std::string& text = found->as_string()->get();
  if (text.find('\0') != std::string::npos) {
    fail(key, "must not contain NUL characters");
    return std::nullopt;
  }
  return text;
}

std::optional<std::int64_t> SectionReader::integer(std::string_view key, Need need) {
  const toml::node* found = present(key, need);
  if (found == nullptr || !found->is_integer()) {
    return std::nullopt;
  }
  return found->as_integer()->get();
}

std::optional<double> SectionReader::number(std::string_view key, Need need) {
  const toml::node* found = present(key, need);
  if (found == nullptr) {
    return std::nullopt;
  }
  if (const auto* integral = found->as_integer()) {
    return static_cast<double>(integral->get());
  }
  if (const auto* floating = found->as_floating_point()) {
    return floating->get();
  }
  return std::nullopt;
}

std::optional<bool> SectionReader::boolean(std::string_view key, Need need) {
  const toml::node* found = present(key, need);
  if (found == nullptr) {
    return std::nullopt;
  }
  if (const auto* value = found->as_boolean()) {
    return value->get();
  }
  return std::nullopt;
}

std::optional<std::vector<std::string>> SectionReader::strings(std::string_view key, Need need) {
  const toml::node* found = present(key, need);
  if (found == nullptr || !found->is_array()) {
    return std::nullopt;
  }
  std::vector<std::string> out;
  const toml::array& array = *found->as_array();
  bool allStrings = true;
  for (std::size_t i = 0; i < array.size(); ++i) {
    const auto* text = array.get(i)->as_string();
    if (text == nullptr) {
      allStrings = false;  // reported by checkKeysAndApplyDefaults
      continue;
    }
    if (text->get().find('\0') != std::string::npos) {
      failElement(key, i, "must not contain NUL characters");
      allStrings = false;
      continue;
    }
    out.push_back(text->get());
  }
  if (!allStrings) {
    return std::nullopt;
  }
  return out;
}

std::optional<std::string> SectionReader::absolutePath(std::string_view key, Need need) {
  std::optional<std::string> value = string(key, need);
  if (value && !value->starts_with('/')) {
    fail(key, "must be an absolute path");
    return std::nullopt;
  }
  return value;
}

std::optional<std::string> SectionReader::checked(std::string_view key, std::optional<std::string> value,
                                                  const Check& check) {
  if (!value) {
    return std::nullopt;
  }
  if (std::optional<std::string> problem = check(*value)) {
    fail(key, std::move(*problem));
    return std::nullopt;
  }
  return value;
}

std::optional<std::string> SectionReader::url(std::string_view key, Need need) {
  return checked(key, string(key, need), [](const std::string& v) { return checkUrl(v); });
}

SectionReader::Check SectionReader::fileCheck(Check check) const {
  if (checksFiles()) {
    return check;
  }
  return [](const std::string&) { return std::optional<std::string>(); };
}

std::optional<std::string> SectionReader::readableFile(std::string_view key, Need need) {
  return checked(key, nonEmpty(key, need), fileCheck(checkReadableFile));
}

std::optional<std::string> SectionReader::trustedFile(std::string_view key, Need need) {
  return checked(key, readableFile(key, need), fileCheck(checkOwnership));
}

std::optional<std::string> SectionReader::pemFile(std::string_view key, Need need) {
  return checked(key, trustedFile(key, need), fileCheck(checkPemFile));
}

std::optional<std::string> SectionReader::secretFile(std::string_view key, Need need) {
  return checked(key, nonEmpty(key, need), fileCheck(checkSecretFile));
}

std::optional<std::string> SectionReader::nonEmpty(std::string_view key, Need need) {
  std::optional<std::string> value = string(key, need);
  if (value && value->empty()) {
    fail(key, "must not be empty");
    return std::nullopt;
  }
  return value;
}

void SectionReader::fail(std::string_view key, std::string what) {
  const toml::node* found = table_.get(key);
  if (loader_.isDefault(found)) {
    what += " (built-in default)";
  }
  loader_.report(loader_.positionOf(found, header_), label_, std::string(key), std::move(what));
}

void SectionReader::failElement(std::string_view key, std::size_t index, std::string what) {
  const toml::node* found = table_.get(key);
  const toml::node* element = nullptr;
  if (found != nullptr && found->is_array()) {
    element = found->as_array()->get(index);
  }
  // An element of an overridden array has no position of its own: use the array's.
  Position where = loader_.positionOf(found, header_);
  if (element != nullptr && element->source().begin.line > 0) {
    where = loader_.positionOf(element, where);
  }
  loader_.report(where, label_, std::string(key) + "[" + std::to_string(index) + "]", std::move(what));
}

void SectionReader::missing(std::string_view key, std::string what) {
  loader_.report(header_, label_, std::string(key), std::move(what));
}

void readDuration(SectionReader& r, const char* key, std::chrono::seconds min, std::chrono::seconds max,
                  const char* range, std::chrono::seconds& value) {
  auto text = r.string(key, Need::optional);
  if (!text) {
    return;
  }
  auto parsed = parseDuration(*text);
  if (!parsed.has_value()) {
    r.fail(key, parsed.error());
  } else if (parsed.value() < min || parsed.value() > max) {
    r.fail(key, range);
  } else {
    value = parsed.value();
  }
}

void readInteger(SectionReader& r, std::string_view key, int min, int max, int& value) {
  if (auto n = r.integer(key, Need::optional)) {
    if (*n < min || *n > max) {
      r.fail(key, "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
                      std::to_string(*n));
    } else {
      value = static_cast<int>(*n);
    }
  }
}

}  // namespace kms::config::detail
