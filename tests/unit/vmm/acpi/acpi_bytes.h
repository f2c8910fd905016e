// Readers for the ACPI table tests: little-endian fields, signatures and tables found by their
// guest address inside a blob built at kAcpiTestBase.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "pinless/base/types.h"

namespace pinless::testing {

inline constexpr Gpa kAcpiTestBase{0xe0000};

inline uint64_t le(const std::vector<uint8_t>& b, size_t off, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t(b.at(off + size_t(i))) << (8 * i);
  return v;
}

inline std::string sig(const std::vector<uint8_t>& b, size_t off) {
  return std::string(reinterpret_cast<const char*>(&b.at(off)), 4);
}

// The table at guest address `gpa` inside a blob placed at kAcpiTestBase.
inline std::vector<uint8_t> table_at(const std::vector<uint8_t>& blob, uint64_t gpa) {
  size_t off = size_t(gpa - kAcpiTestBase.value());
  size_t len = size_t(le(blob, off + 4, 4));
  REQUIRE(off + len <= blob.size());
  return {blob.begin() + ptrdiff_t(off), blob.begin() + ptrdiff_t(off + len)};
}

}  // namespace pinless::testing
