// SplitQueue: the device side of one split virtqueue (virtio 1.x, section 2.7) in guest RAM.
// The three rings (descriptor table, driver/"avail" ring, device/"used" ring) are located and
// bounds-checked once, when the driver enables the queue; every descriptor the driver offers
// is checked again when it is popped: index in range, buffer inside guest RAM, readable
// buffers before writable ones, no loop (a chain is at most `size` long), no INDIRECT (not
// offered), total length within 32 bits. A violation is an error the transport turns into
// DEVICE_NEEDS_RESET: nothing is read or written outside guest RAM and nothing is consumed.
// Ring indices and descriptors are read once into local copies (the guest may change them
// at any time). EVENT_IDX is not offered: the driver's NO_INTERRUPT flag is the only hint.
// Thread-compatible: the transport serialises access to a queue.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "pinless/base/result.h"
#include "pinless/base/types.h"
#include "pinless/virtio/guest_ram.h"

namespace pinless::virtio {

constexpr uint16_t kMaxQueueSize = 32768;
constexpr uint16_t kDescFlagNext = 1, kDescFlagWrite = 2, kDescFlagIndirect = 4;
constexpr uint16_t kAvailFlagNoInterrupt = 1;

// Where the driver put a queue's rings, and how many entries they have.
struct QueueLayout {
  uint16_t size = 0;  // a power of two, 1..kMaxQueueSize
  Gpa desc;           // 16 * size bytes, 16-aligned
  Gpa driver;         // the avail ring: 6 + 2 * size bytes, 2-aligned
  Gpa device;         // the used ring: 6 + 8 * size bytes, 4-aligned

  static uint64_t desc_bytes(uint16_t n) { return 16ull * n; }
  static uint64_t driver_bytes(uint16_t n) { return 6ull + 2ull * n; }
  static uint64_t device_bytes(uint16_t n) { return 6ull + 8ull * n; }
};

// One popped descriptor chain: its head index and its buffers as host spans into guest RAM
// (validated; they stay valid while guest RAM is mapped, i.e. for the VM's life).
struct Chain {
  uint16_t head = 0;
  std::vector<std::span<uint8_t>> readable;  // device-readable, in chain order
  std::vector<std::span<uint8_t>> writable;  // device-writable, in chain order

  uint64_t readable_bytes() const;
  uint64_t writable_bytes() const;
  // Copies the first out.size() readable bytes across buffer boundaries; returns the count
  // copied (less when the chain has fewer).
  size_t gather(std::span<uint8_t> out) const;
  // Copies `in` into the writable buffers in order; returns the count written (less when
  // they are smaller).
  size_t scatter(std::span<const uint8_t> in) const;
};

class SplitQueue {
 public:
  // EINVAL for a bad size or misaligned ring, EFAULT for a ring not wholly in guest RAM.
  [[nodiscard]] static Result<SplitQueue> create(const GuestRam& ram, const QueueLayout& layout);

  const QueueLayout& layout() const { return layout_; }

  // The next chain the driver made available, or nullopt when there is none. An error means
  // the driver broke the ring (the transport sets DEVICE_NEEDS_RESET); the queue is then
  // unusable until reset.
  [[nodiscard]] Result<std::optional<Chain>> pop();
  // Returns chain `head` to the driver with `written` bytes written into its writable part.
  void push(uint16_t head, uint32_t written);
  // False when the driver asked not to be interrupted (avail flags NO_INTERRUPT).
  bool wants_interrupt() const;
  // Chains popped and pushed since enable (for counters and tests).
  uint64_t popped() const { return popped_; }

 private:
  SplitQueue(const GuestRam& ram, const QueueLayout& layout, std::span<uint8_t> desc,
             std::span<uint8_t> driver, std::span<uint8_t> device)
      : ram_(&ram), layout_(layout), desc_(desc), driver_(driver), device_(device) {}
  [[nodiscard]] Result<Chain> walk(uint16_t head) const;

  const GuestRam* ram_;
  QueueLayout layout_;
  std::span<uint8_t> desc_, driver_, device_;
  uint16_t next_avail_ = 0;  // the driver ring index of the next chain to pop
  uint16_t next_used_ = 0;   // the used ring index of the next entry to push
  uint64_t popped_ = 0;
};

}  // namespace pinless::virtio
