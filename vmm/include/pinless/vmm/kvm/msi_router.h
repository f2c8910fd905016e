// MsiRouter: the VM's interrupt routing table (KVM_SET_GSI_ROUTING) and the eventfds bound to
// it (KVM_IRQFD). Allocates GSIs for MSI/MSI-X vectors above the 24 IOAPIC pins, keeps one MSI
// route (address, data, optional device id for KVM_MSI_VALID_DEVID) per GSI, and re-pushes the
// whole table whenever the guest reprograms a vector. KVM_SET_GSI_ROUTING replaces the entire
// table, so every push also carries KVM's default routes for GSI 0..23 (PIC and IOAPIC pins),
// which the legacy devices' KVM_IRQ_LINE depends on.
// Masking: a masked (or unrouted) vector has its irqfd detached, so signals accumulate in the
// eventfd counter; attaching it again on unmask makes KVM inject the pending interrupt (KVM
// checks the eventfd when an irqfd is assigned). That is the MSI-X pending-bit semantics for
// free.
// Does not own the VM fd or the eventfds. Thread-safe (one mutex; the ioctls run under it so
// the kernel sees updates in the order the guest made them).
#pragma once

#include "pinless/base/linux_kvm.h"

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "pinless/base/result.h"
#include "pinless/base/sys.h"
#include "pinless/pci/msi_message.h"
#include "pinless/pci/platform.h"

namespace pinless::vmm {

class MsiRouter final : public pci::MsiRoutes {
 public:
  static constexpr uint32_t kLegacyGsis = 24;    // IOAPIC pins; MSI GSIs start here
  static constexpr uint32_t kDefaultMaxGsi = 4096;  // KVM_MAX_IRQ_ROUTES

  // `legacy_routes`: include the in-kernel PIC/IOAPIC routes for GSI 0..23 in every push
  // (true whenever the VM has KVM_CREATE_IRQCHIP, i.e. always in pinless).
  MsiRouter(Sys& sys, int vm_fd, uint32_t max_gsi = kDefaultMaxGsi, bool legacy_routes = true);
  // Detaches the irqfds still attached (best effort: the VM may already be gone).
  ~MsiRouter() override;
  MsiRouter(const MsiRouter&) = delete;
  MsiRouter& operator=(const MsiRouter&) = delete;

  // Lowest free GSI >= 24. Unrouted until update. ENOSPC when none is left.
  [[nodiscard]] Result<uint32_t> allocate_gsi() override;
  // Detaches its irqfd, drops its route and frees the GSI.
  [[nodiscard]] Status release_gsi(uint32_t gsi) override;

  // A guest reprogrammed a vector: new message and mask state in one step.
  [[nodiscard]] Status update(uint32_t gsi, const pci::MsiMessage& msg, bool masked) override;

  // Binds `event_fd` (not owned) to `gsi`; attached to KVM while the vector is routed and
  // unmasked. EBUSY if the GSI already has an eventfd.
  [[nodiscard]] Status attach_irqfd(uint32_t gsi, int event_fd) override;

  // The table the next push would send (legacy routes first, then MSI routes by GSI).
  std::vector<kvm_irq_routing_entry> routing_table() const;
  // Number of KVM_SET_GSI_ROUTING pushes so far (for tests and stats).
  uint64_t pushes() const;

 private:
  struct Vector {
    std::optional<pci::MsiMessage> msg;
    bool masked = false;
    int event_fd = -1;
    bool irqfd_attached = false;
  };
  using Vectors = std::map<uint32_t, Vector>;

  static bool active(const Vector& v) { return v.event_fd >= 0 && !v.masked && v.msg.has_value(); }
  std::vector<kvm_irq_routing_entry> table_locked(const Vectors& vectors) const;
  Status push_locked(const Vectors& vectors);
  Status irqfd_locked(uint32_t gsi, int event_fd, bool assign);
  // Moves from vectors_ to `next` for one GSI: detach, push routes, attach, in the order that
  // never leaves an attached irqfd without a route.
  Status apply_locked(uint32_t gsi, Vectors next);
  Result<Vectors::iterator> find_locked(uint32_t gsi, const char* op);

  mutable std::mutex mu_;
  Sys& sys_;
  int vm_fd_;
  uint32_t max_gsi_;
  bool legacy_routes_;
  Vectors vectors_;
  uint64_t pushes_ = 0;
};

}  // namespace pinless::vmm
