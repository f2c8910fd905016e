#include "pinless/base/clock.h"

#include <time.h>

namespace pinless {

uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

namespace {
// Runs during static initialisation of the executable, before main().
const uint64_t g_start_ns = monotonic_ns();
}  // namespace

uint64_t process_start_ns() { return g_start_ns; }

}  // namespace pinless
