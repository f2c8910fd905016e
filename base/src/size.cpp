#include "pinless/base/size.h"

#include <cctype>
#include <charconv>
#include <cstdio>

namespace pinless {

Result<uint64_t> parse_size(std::string_view text) {
  auto bad = [&](const char* why) {
    return fail("parse size", EINVAL, "'" + std::string(text) + "'",
                std::string(why) + "; write a size like 512M, 4G or 1048576");
  };
  if (text.empty()) return bad("empty size");
  int base = 10;
  std::string_view digits = text;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    base = 16;
    digits.remove_prefix(2);
  }
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, base);
  if (ec == std::errc::result_out_of_range) return bad("size too large");
  if (ec != std::errc() || ptr == digits.data()) return bad("not a number");
  std::string suffix(ptr, digits.data() + digits.size());
  for (auto& c : suffix) c = char(std::toupper(static_cast<unsigned char>(c)));
  uint64_t mult = 1;
  if (!suffix.empty()) {
    char unit = suffix[0];
    std::string rest = suffix.substr(1);
    if (unit == 'B' && rest.empty()) {
      mult = 1;
    } else {
      if (rest != "" && rest != "B" && rest != "IB") return bad("unknown size suffix");
      switch (unit) {
        case 'K': mult = 1ull << 10; break;
        case 'M': mult = 1ull << 20; break;
        case 'G': mult = 1ull << 30; break;
        case 'T': mult = 1ull << 40; break;
        default: return bad("unknown size suffix");
      }
    }
  }
  if (value != 0 && mult > UINT64_MAX / value) return bad("size too large");
  return value * mult;
}

std::string format_size(uint64_t bytes) {
  static constexpr struct { uint64_t mult; const char* unit; } kUnits[] = {
      {1ull << 40, "T"}, {1ull << 30, "G"}, {1ull << 20, "M"}, {1ull << 10, "K"}};
  for (const auto& u : kUnits) {
    if (bytes != 0 && bytes % u.mult == 0) return std::to_string(bytes / u.mult) + u.unit;
  }
  return std::to_string(bytes);
}

std::string format_hex(uint64_t value) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%#llx", static_cast<unsigned long long>(value));
  return buf;
}

}  // namespace pinless
