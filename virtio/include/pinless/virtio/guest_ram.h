// GuestRam: how a virtio device reaches guest memory. Every address in a virtqueue or a
// request comes from the guest, so the only way in is a bounds-checked slice: the whole range
// [gpa, gpa + len) must be guest RAM (one region; no hole, no MMIO, no wrap-around), else an
// error. vmm adapts its GuestMemory; tests use a plain buffer. Implementations must be
// thread-safe (queues are served from vCPU threads and the event loop).
#pragma once

#include <cstdint>
#include <span>

#include "pinless/base/result.h"
#include "pinless/base/types.h"

namespace pinless::virtio {

class GuestRam {
 public:
  virtual ~GuestRam() = default;
  // EFAULT when any byte of the range is not guest RAM (len 0 is a valid, empty slice).
  [[nodiscard]] virtual Result<std::span<uint8_t>> slice(Gpa gpa, uint64_t len) const = 0;
};

}  // namespace pinless::virtio
