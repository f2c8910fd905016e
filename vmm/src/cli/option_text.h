// Pieces of comma-separated option values ("size=1G,hugepages=on"), shared by the parsers of
// --memory, --device, --ram-region and --pin-limit, and the error they return. Pure functions.
#pragma once

#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "pinless/base/result.h"

namespace pinless::vmm::cli_text {

// Splits at every `sep`; a trailing separator yields a final empty item.
inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  if (!s.empty() && s.back() == sep) out.emplace_back();
  return out;
}

// "key=value" -> {key, value}; without '=' -> {item, ""}.
inline std::pair<std::string, std::string> key_value(const std::string& item) {
  auto eq = item.find('=');
  if (eq == std::string::npos) return {item, ""};
  return {item.substr(0, eq), item.substr(eq + 1)};
}

// A bad option value. The line names the problem and the fix; it is the Error's operation,
// with no errno, context or hint, so Error::message() prints exactly the line.
inline std::unexpected<Error> bad_option(std::string line) { return fail(std::move(line), 0); }

}  // namespace pinless::vmm::cli_text
