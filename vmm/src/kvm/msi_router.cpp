#include "pinless/vmm/kvm/msi_router.h"

#include <cstring>

#include "pinless/base/log.h"

namespace pinless::vmm {
namespace {

std::string gsi_text(uint32_t gsi) { return "GSI " + std::to_string(gsi); }

kvm_irq_routing_entry irqchip_entry(uint32_t gsi, uint32_t chip, uint32_t pin) {
  kvm_irq_routing_entry e{};
  e.gsi = gsi;
  e.type = KVM_IRQ_ROUTING_IRQCHIP;
  e.u.irqchip.irqchip = chip;
  e.u.irqchip.pin = pin;
  return e;
}

}  // namespace

MsiRouter::MsiRouter(Sys& sys, int vm_fd, uint32_t max_gsi, bool legacy_routes)
    : sys_(sys), vm_fd_(vm_fd), max_gsi_(max_gsi), legacy_routes_(legacy_routes) {}

MsiRouter::~MsiRouter() {
  std::lock_guard lock(mu_);
  for (auto& [gsi, v] : vectors_) {
    if (!v.irqfd_attached) continue;
    if (auto s = irqfd_locked(gsi, v.event_fd, false); !s) logger("kvm")->warn("MSI router teardown: {}", s.error().message());
  }
}

Result<uint32_t> MsiRouter::allocate_gsi() {
  std::lock_guard lock(mu_);
  uint32_t gsi = kLegacyGsis;
  for (const auto& [used, v] : vectors_) {  // ordered: the first gap is the lowest free GSI
    if (used != gsi) break;
    ++gsi;
  }
  if (gsi >= max_gsi_) {
    return fail("allocate GSI", ENOSPC, "", "all " + std::to_string(max_gsi_) + " GSIs are in use");
  }
  vectors_.emplace(gsi, Vector{});
  return gsi;
}

Result<MsiRouter::Vectors::iterator> MsiRouter::find_locked(uint32_t gsi, const char* op) {
  auto it = vectors_.find(gsi);
  if (it == vectors_.end()) return fail(op, ENOENT, gsi_text(gsi), "GSI was not allocated");
  return it;
}

Status MsiRouter::release_gsi(uint32_t gsi) {
  std::lock_guard lock(mu_);
  PINLESS_TRY(find_locked(gsi, "release GSI"));
  Vectors next = vectors_;
  next.erase(gsi);
  return apply_locked(gsi, std::move(next));
}

Status MsiRouter::update(uint32_t gsi, const pci::MsiMessage& msg, bool masked) {
  std::lock_guard lock(mu_);
  PINLESS_TRY(find_locked(gsi, "update MSI route"));
  Vectors next = vectors_;
  next[gsi].msg = msg;
  next[gsi].masked = masked;
  return apply_locked(gsi, std::move(next));
}

Status MsiRouter::attach_irqfd(uint32_t gsi, int event_fd) {
  std::lock_guard lock(mu_);
  auto it = PINLESS_TRY(find_locked(gsi, "KVM_IRQFD"));
  if (event_fd < 0) return fail("KVM_IRQFD", EBADF, gsi_text(gsi));
  if (it->second.event_fd >= 0) return fail("KVM_IRQFD", EBUSY, gsi_text(gsi), "GSI already has an eventfd");
  Vectors next = vectors_;
  next[gsi].event_fd = event_fd;
  return apply_locked(gsi, std::move(next));
}

Status MsiRouter::apply_locked(uint32_t gsi, Vectors next) {
  auto before_it = vectors_.find(gsi);
  auto after_it = next.find(gsi);
  const Vector* before = before_it != vectors_.end() ? &before_it->second : nullptr;
  Vector* after = after_it != next.end() ? &after_it->second : nullptr;
  bool attached = before != nullptr && before->irqfd_attached;
  int attached_fd = attached ? before->event_fd : -1;
  bool want = after != nullptr && active(*after);
  bool keep = attached && want && after->event_fd == attached_fd;
  static const std::optional<pci::MsiMessage> kUnrouted;
  bool routes_changed = (before != nullptr ? before->msg : kUnrouted) !=
                        (after != nullptr ? after->msg : kUnrouted);

  // 1. Detach first: no irqfd may fire into a route that is about to vanish, and signals
  //    that arrive from now on stay pending in the eventfd.
  if (attached && !keep) {
    PINLESS_TRY_VOID(irqfd_locked(gsi, attached_fd, false));
    before_it->second.irqfd_attached = false;
  }
  // 2. Push the table if the routed message changed (an attached irqfd follows the new
  //    route inside KVM).
  if (routes_changed) {
    if (auto r = push_locked(next); !r) {
      // The kernel kept the old table, so do we; undo step 1.
      if (attached && !keep && irqfd_locked(gsi, attached_fd, true)) {
        before_it->second.irqfd_attached = true;
      }
      return r;
    }
  }
  // 3. Attach once the route exists; KVM injects at once if the eventfd was signalled
  //    while the vector was masked.
  Status result{};
  if (after != nullptr) {
    after->irqfd_attached = keep;
    if (want && !keep) {
      result = irqfd_locked(gsi, after->event_fd, true);
      after->irqfd_attached = result.has_value();
    }
  }
  vectors_ = std::move(next);
  return result;
}

std::vector<kvm_irq_routing_entry> MsiRouter::table_locked(const Vectors& vectors) const {
  std::vector<kvm_irq_routing_entry> t;
  if (legacy_routes_) {
    // KVM's default x86 table: GSI 0..15 on both the PICs and the IOAPIC, 16..23 IOAPIC only.
    for (uint32_t gsi = 0; gsi < kLegacyGsis; ++gsi) {
      t.push_back(irqchip_entry(gsi, KVM_IRQCHIP_IOAPIC, gsi));
      if (gsi < 16) {
        t.push_back(irqchip_entry(gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, gsi % 8));
      }
    }
  }
  for (const auto& [gsi, v] : vectors) {
    if (!v.msg) continue;
    kvm_irq_routing_entry e{};
    e.gsi = gsi;
    e.type = KVM_IRQ_ROUTING_MSI;
    e.u.msi.address_lo = uint32_t(v.msg->address);
    e.u.msi.address_hi = uint32_t(v.msg->address >> 32);
    e.u.msi.data = v.msg->data;
    if (v.msg->devid) {
      e.flags = KVM_MSI_VALID_DEVID;
      e.u.msi.devid = *v.msg->devid;
    }
    t.push_back(e);
  }
  return t;
}

std::vector<kvm_irq_routing_entry> MsiRouter::routing_table() const {
  std::lock_guard lock(mu_);
  return table_locked(vectors_);
}

uint64_t MsiRouter::pushes() const {
  std::lock_guard lock(mu_);
  return pushes_;
}

Status MsiRouter::push_locked(const Vectors& vectors) {
  std::vector<kvm_irq_routing_entry> t = table_locked(vectors);
  // struct kvm_irq_routing ends in a flexible array: header, then the entries.
  std::vector<uint8_t> buf(sizeof(kvm_irq_routing) + t.size() * sizeof(kvm_irq_routing_entry) + 8);
  auto* routing = reinterpret_cast<kvm_irq_routing*>(buf.data());
  routing->nr = uint32_t(t.size());
  routing->flags = 0;
  std::memcpy(routing->entries, t.data(), t.size() * sizeof(kvm_irq_routing_entry));
  int r = sys_.ioctl(vm_fd_, KVM_SET_GSI_ROUTING, routing);
  if (r < 0) {
    return fail("KVM_SET_GSI_ROUTING", -r, std::to_string(t.size()) + " routes");
  }
  ++pushes_;
  return {};
}

Status MsiRouter::irqfd_locked(uint32_t gsi, int event_fd, bool assign) {
  kvm_irqfd irqfd{};
  irqfd.fd = uint32_t(event_fd);
  irqfd.gsi = gsi;
  irqfd.flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN;
  int r = sys_.ioctl(vm_fd_, KVM_IRQFD, &irqfd);
  if (r < 0) {
    return fail(assign ? "KVM_IRQFD" : "KVM_IRQFD deassign", -r,
                gsi_text(gsi) + " eventfd " + std::to_string(event_fd));
  }
  return {};
}

}  // namespace pinless::vmm
