// Vm: one KVM virtual machine (the fd from KVM_CREATE_VM) with the x86 platform pieces that
// must exist before any vCPU: TSS and EPT identity-map pages, the in-kernel irqchip
// (PIC + IOAPIC + LAPICs) and PIT. Owns the VM fd. Memslots, interrupt lines and irqfds are
// set through it. Thread-safe: the ioctls used after creation are safe to issue concurrently.
#pragma once

#include <cstdint>

#include "pinless/base/fd.h"
#include "pinless/base/result.h"
#include "pinless/base/sys.h"
#include "pinless/pci/platform.h"
#include "pinless/vmm/kvm/kvm.h"
#include "pinless/vmm/memory/guest_memory.h"

namespace pinless::vmm {

class Vm final : public pci::MemorySlots {
 public:
  // KVM_CREATE_VM, then (order required by KVM: all before the first vCPU)
  // KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR, KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2.
  [[nodiscard]] static Result<Vm> create(const Kvm& kvm);

  Sys& sys() const { return *sys_; }
  int fd() const { return fd_.get(); }

  // KVM_SET_USER_MEMORY_REGION for one RAM region.
  [[nodiscard]] Status map_memory(uint32_t slot, const MemoryRegion& region);
  // The same for a device's memory (BAR pages): memslots for pci device models.
  [[nodiscard]] Status set_memory_slot(uint32_t slot, Range<Gpa> gpa, uint8_t* host) override {
    return map_memory(slot, MemoryRegion{gpa, host, 0});
  }
  // One memslot per region of `memory`, slots 0.. in order.
  [[nodiscard]] Status map_guest_memory(const GuestMemory& memory);
  // KVM_IRQ_LINE: drive an interrupt line (GSI) of the in-kernel PIC/IOAPIC.
  [[nodiscard]] Status set_irq_line(uint32_t gsi, bool level);
  // KVM_IRQFD: signalling `event_fd` injects `gsi`. A `resample_fd` >= 0 makes it a
  // level-triggered irqfd (KVM_IRQFD_FLAG_RESAMPLE).
  [[nodiscard]] Status add_irqfd(int event_fd, uint32_t gsi, int resample_fd = -1);
  [[nodiscard]] Status remove_irqfd(int event_fd, uint32_t gsi);
  // KVM_IOEVENTFD: a guest write of `len` bytes (1, 2, 4 or 8) to MMIO `addr` signals
  // `event_fd` inside KVM instead of exiting to pinless; remove with the same arguments.
  [[nodiscard]] Status add_ioeventfd(int event_fd, Gpa addr, uint32_t len);
  [[nodiscard]] Status remove_ioeventfd(int event_fd, Gpa addr, uint32_t len);

 private:
  Vm(Sys* sys, UniqueFd fd) : sys_(sys), fd_(std::move(fd)) {}
  [[nodiscard]] Status ioeventfd(int event_fd, Gpa addr, uint32_t len, bool assign);

  Sys* sys_;
  UniqueFd fd_;
};

}  // namespace pinless::vmm
