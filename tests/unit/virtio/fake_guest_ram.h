// Test doubles for the virtio tests: FakeGuestRam (one block of "guest RAM" at a base GPA,
// with the same bounds rule as vmm's GuestMemory) and TestDriver, which plays the guest
// driver's side of a split virtqueue (descriptor table, avail ring, reading the used ring).
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "pinless/virtio/guest_ram.h"
#include "pinless/virtio/queue.h"

namespace pinless::testing {

class FakeGuestRam final : public virtio::GuestRam {
 public:
  FakeGuestRam(Gpa base, uint64_t size) : base_(base), bytes_(size, 0) {}
  Result<std::span<uint8_t>> slice(Gpa gpa, uint64_t len) const override {
    if (gpa < base_ || gpa - base_ > bytes_.size() || len > bytes_.size() - (gpa - base_))
      return fail("guest RAM", EFAULT);
    return std::span<uint8_t>(const_cast<uint8_t*>(bytes_.data()) + (gpa - base_), len);
  }
  uint8_t* at(Gpa gpa) { return bytes_.data() + (gpa - base_); }
  template <typename T>
  void put(Gpa gpa, T v) { std::memcpy(at(gpa), &v, sizeof v); }
  template <typename T>
  T get(Gpa gpa) {
    T v;
    std::memcpy(&v, at(gpa), sizeof v);
    return v;
  }

 private:
  Gpa base_;
  std::vector<uint8_t> bytes_;
};

// The driver side of one queue whose rings sit at `layout` in `ram`.
struct TestDriver {
  FakeGuestRam& ram;
  virtio::QueueLayout layout;
  uint16_t avail_idx = 0;
  uint16_t used_seen = 0;

  void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
    Gpa d = layout.desc + 16ull * i;
    ram.put<uint64_t>(d, addr);
    ram.put<uint32_t>(d + 8, len);
    ram.put<uint16_t>(d + 12, flags);
    ram.put<uint16_t>(d + 14, next);
  }
  // Makes chain `head` available and publishes the new index.
  void offer(uint16_t head) {
    ram.put<uint16_t>(layout.driver + 4 + 2ull * (avail_idx % layout.size), head);
    ram.put<uint16_t>(layout.driver + 2, ++avail_idx);
  }
  void set_avail_idx(uint16_t v) { ram.put<uint16_t>(layout.driver + 2, avail_idx = v); }
  uint16_t used_idx() { return ram.get<uint16_t>(layout.device + 2); }
  // The used element at ring position `n`: {id, len}.
  std::pair<uint32_t, uint32_t> used(uint16_t n) {
    Gpa e = layout.device + 4 + 8ull * (n % layout.size);
    return {ram.get<uint32_t>(e), ram.get<uint32_t>(e + 4)};
  }
};

}  // namespace pinless::testing
