// Monotonic time for the startup timeline. process_start() is captured by a static
// initializer in pinless_base, i.e. before main() runs: "microseconds since exec" in the
// timeline means microseconds since that point (the dynamic loader's work before it is
// not counted; scripts/bench-startup measures exec externally). Thread-safe.
#pragma once

#include <cstdint>

namespace pinless {

// CLOCK_MONOTONIC in nanoseconds.
uint64_t monotonic_ns();
// CLOCK_MONOTONIC at process start, in nanoseconds.
uint64_t process_start_ns();
// Microseconds since process start.
inline uint64_t us_since_start() { return (monotonic_ns() - process_start_ns()) / 1000; }

}  // namespace pinless
