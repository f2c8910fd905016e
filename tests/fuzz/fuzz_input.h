// What the libFuzzer targets share: the input read as little-endian integers, front to back
// (zeros once it runs out, so every input is a complete program), and the way a target
// reports a broken invariant (a message and abort(), which libFuzzer records as a crash).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <source_location>

namespace pinless::fuzz {

struct Bytes {
  const uint8_t* p;
  size_t n;
  bool empty() const { return n == 0; }
  uint8_t u8() { return n == 0 ? 0 : (--n, *p++); }
  uint16_t u16() {
    uint16_t lo = u8();
    return uint16_t(lo | u8() << 8);
  }
  uint32_t u32() {
    uint32_t lo = u16();
    return lo | uint32_t(u16()) << 16;
  }
  uint64_t u64() {
    uint64_t lo = u32();
    return lo | uint64_t(u32()) << 32;
  }
};

// `target`: the fuzz target's name, to tell its messages apart in CI logs.
[[noreturn]] inline void broken(const char* target, const char* why) {
  std::fprintf(stderr, "%s: %s\n", target, why);
  std::abort();
}

// A broken invariant reported by the line that checks it.
inline void check(bool ok, const char* target, std::source_location at = std::source_location::current()) {
  if (ok) return;
  std::fprintf(stderr, "%s: check failed at line %u\n", target, unsigned(at.line()));
  std::abort();
}

}  // namespace pinless::fuzz
