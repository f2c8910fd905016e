#include "pinless/vmm/kvm/vm.h"

#include "pinless/base/log.h"
#include "pinless/vmm/layout.h"

namespace pinless::vmm {

Result<Vm> Vm::create(const Kvm& kvm) {
  Sys& sys = kvm.sys();
  int fd = -EINTR;
  // KVM_CREATE_VM can fail with EINTR while the kernel tears down a previous VM's memory.
  for (int attempt = 0; attempt < 10 && fd == -EINTR; ++attempt) {
    fd = sys.ioctl_int(kvm.fd(), KVM_CREATE_VM, 0);
  }
  if (fd < 0) return fail("KVM_CREATE_VM", -fd);
  Vm vm(&sys, UniqueFd(sys, fd));

  // Intel VMX needs a 3-page TSS and a 1-page identity map for real-mode emulation; both sit
  // just below the 4 GiB boundary, outside RAM and device ranges (layout.h). Both must be set
  // before vCPUs exist.
  PINLESS_TRY_VOID(sys_ioctl_int(sys, vm.fd(), KVM_SET_TSS_ADDR, layout::kTss.value(), "KVM_SET_TSS_ADDR"));
  uint64_t identity = layout::kIdentityMap.value();
  PINLESS_TRY_VOID(sys_ioctl(sys, vm.fd(), KVM_SET_IDENTITY_MAP_ADDR, &identity, "KVM_SET_IDENTITY_MAP_ADDR"));
  // The irqchip must exist before vCPUs so each vCPU gets an in-kernel LAPIC, and before the
  // PIT, which delivers through it.
  PINLESS_TRY_VOID(sys_ioctl_int(sys, vm.fd(), KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP"));
  // flags 0: the kernel also emulates port 0x61 (PC speaker gate / PIT channel 2 output) that
  // Linux reads while calibrating; with KVM_PIT_SPEAKER_DUMMY it would exit to us.
  kvm_pit_config pit{};
  pit.flags = 0;
  PINLESS_TRY_VOID(sys_ioctl(sys, vm.fd(), KVM_CREATE_PIT2, &pit, "KVM_CREATE_PIT2"));
  return vm;
}

Status Vm::map_memory(uint32_t slot, const MemoryRegion& region) {
  kvm_userspace_memory_region mr{};
  mr.slot = slot;
  mr.flags = 0;
  mr.guest_phys_addr = region.gpa.start.value();
  mr.memory_size = region.gpa.size;
  mr.userspace_addr = region.hva().value();
  auto r = sys_ioctl(*sys_, fd(), KVM_SET_USER_MEMORY_REGION, &mr, "KVM_SET_USER_MEMORY_REGION");
  if (!r) {
    char ctx[96];
    std::snprintf(ctx, sizeof(ctx), "slot %u gpa %#llx size %#llx", slot,
                  static_cast<unsigned long long>(mr.guest_phys_addr),
                  static_cast<unsigned long long>(mr.memory_size));
    return std::unexpected(std::move(r.error()).within(ctx));
  }
  logger("kvm")->debug("memslot {}: gpa {:#x} size {:#x} hva {:#x}", slot, mr.guest_phys_addr,
                       mr.memory_size, mr.userspace_addr);
  return {};
}

Status Vm::map_guest_memory(const GuestMemory& memory) {
  uint32_t slot = 0;
  for (const auto& region : memory.regions()) PINLESS_TRY_VOID(map_memory(slot++, region));
  return {};
}

Status Vm::set_irq_line(uint32_t gsi, bool level) {
  kvm_irq_level irq{};
  irq.irq = gsi;
  irq.level = level ? 1 : 0;
  PINLESS_TRY_VOID(sys_ioctl(*sys_, fd(), KVM_IRQ_LINE, &irq, "KVM_IRQ_LINE"));
  return {};
}

Status Vm::add_irqfd(int event_fd, uint32_t gsi, int resample_fd) {
  kvm_irqfd req{};
  req.fd = uint32_t(event_fd);
  req.gsi = gsi;
  if (resample_fd >= 0) {
    req.flags = KVM_IRQFD_FLAG_RESAMPLE;
    req.resamplefd = uint32_t(resample_fd);
  }
  PINLESS_TRY_VOID(sys_ioctl(*sys_, fd(), KVM_IRQFD, &req, "KVM_IRQFD"));
  return {};
}

Status Vm::remove_irqfd(int event_fd, uint32_t gsi) {
  kvm_irqfd req{};
  req.fd = uint32_t(event_fd);
  req.gsi = gsi;
  req.flags = KVM_IRQFD_FLAG_DEASSIGN;
  PINLESS_TRY_VOID(sys_ioctl(*sys_, fd(), KVM_IRQFD, &req, "KVM_IRQFD deassign"));
  return {};
}

Status Vm::add_ioeventfd(int event_fd, Gpa addr, uint32_t len) { return ioeventfd(event_fd, addr, len, true); }

Status Vm::remove_ioeventfd(int event_fd, Gpa addr, uint32_t len) { return ioeventfd(event_fd, addr, len, false); }

Status Vm::ioeventfd(int event_fd, Gpa addr, uint32_t len, bool assign) {
  kvm_ioeventfd req{};
  req.addr = addr.value();
  req.len = len;
  req.fd = event_fd;
  if (!assign) req.flags = KVM_IOEVENTFD_FLAG_DEASSIGN;
  PINLESS_TRY_VOID(sys_ioctl(*sys_, fd(), KVM_IOEVENTFD, &req, assign ? "KVM_IOEVENTFD" : "KVM_IOEVENTFD deassign"));
  return {};
}

}  // namespace pinless::vmm
