// VmGuestRam: the guest's RAM as virtio devices see it (virtio::GuestRam over GuestMemory).
// A range must lie inside one RAM region: a buffer that spans the 32-bit PCI hole, or sits in
// it, is not RAM. Borrows the GuestMemory (which outlives every device). Thread-safe.
#pragma once

#include "pinless/virtio/guest_ram.h"
#include "pinless/vmm/memory/guest_memory.h"

namespace pinless::vmm {

class VmGuestRam final : public virtio::GuestRam {
 public:
  explicit VmGuestRam(const GuestMemory& memory) : memory_(memory) {}
  Result<std::span<uint8_t>> slice(Gpa gpa, uint64_t len) const override {
    if (len == 0) return std::span<uint8_t>();
    auto s = memory_.slice(gpa, len);
    if (!s) return fail("guest RAM", EFAULT, s.error().message());
    return *s;
  }

 private:
  const GuestMemory& memory_;
};

}  // namespace pinless::vmm
