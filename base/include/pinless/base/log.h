// Named spdlog loggers per subsystem: kvm, vfio, iommu, viommu, boot, vmm, dev.
// error = fatal to the VM, warn = guest misbehaving (rate-limited), info = lifecycle,
// debug = per request, trace = per exit. Log output goes to stderr so that the guest
// console on stdout stays clean. Thread-safe.
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace pinless {

// Returns the logger for a subsystem, creating it on first use.
std::shared_ptr<spdlog::logger> logger(const std::string& name);
// Sets the level for all pinless loggers ("error", "warn", "info", "debug", "trace").
void set_log_level(const std::string& level);

// Lets through at most `burst` events, then one in every `every` (for guest-triggered warnings).
class RateLimit {
 public:
  explicit RateLimit(uint64_t burst = 10, uint64_t every = 1000) : burst_(burst), every_(every) {}
  bool allow() {
    uint64_t n = count_.fetch_add(1, std::memory_order_relaxed);
    return n < burst_ || (n - burst_) % every_ == 0;
  }
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  // How many of `events` calls to allow() let the event through: what a log line guarded by
  // this limiter can amount to at most (tests bound a guest's flood of warnings with it).
  static constexpr uint64_t allowed_of(uint64_t events, uint64_t burst, uint64_t every) {
    if (events <= burst) return events;
    return burst + 1 + (events - burst - 1) / every;
  }
  uint64_t allowed_of(uint64_t events) const { return allowed_of(events, burst_, every_); }

 private:
  std::atomic<uint64_t> count_{0};
  uint64_t burst_;
  uint64_t every_;
};

}  // namespace pinless
