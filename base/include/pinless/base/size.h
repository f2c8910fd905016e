// Parsing and printing of byte sizes as users write them: "512M", "4G", "1GiB", "4096".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "pinless/base/result.h"

namespace pinless {

// Accepts a decimal or 0x-hex number with an optional K/M/G/T suffix (optionally followed
// by "iB" or "B"), binary multiples. Rejects empty, negative, junk and overflow.
Result<uint64_t> parse_size(std::string_view text);
// "1G", "512M", "4K" or plain bytes, whichever is exact.
std::string format_size(uint64_t bytes);
// "0x1f000" (and "0" for zero): addresses in messages are always hex.
std::string format_hex(uint64_t value);

}  // namespace pinless
