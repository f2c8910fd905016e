#include <doctest/doctest.h>
#include "pinless/base/linux_kvm.h"

#include <vector>

#include "fakes/fake_sys.h"
#include "pinless/vmm/kvm/msi_router.h"

using namespace pinless;
using namespace pinless::pci;
using namespace pinless::vmm;
using pinless::testing::FakeSys;

namespace {

constexpr int kVmFd = 77;

// Scripts KVM_SET_GSI_ROUTING and KVM_IRQFD and records what the router sent.
struct Kvm {
  FakeSys sys;
  std::vector<std::vector<kvm_irq_routing_entry>> tables;
  std::vector<kvm_irqfd> irqfds;
  int routing_error = 0;

  Kvm() {
    sys.on_ioctl(KVM_SET_GSI_ROUTING, [this](int fd, unsigned long, void* arg) {
      CHECK(fd == kVmFd);
      if (routing_error != 0) return -routing_error;
      auto* r = static_cast<kvm_irq_routing*>(arg);
      tables.emplace_back(r->entries, r->entries + r->nr);
      return 0;
    });
    sys.on_ioctl(KVM_IRQFD, [this](int fd, unsigned long, void* arg) {
      CHECK(fd == kVmFd);
      irqfds.push_back(*static_cast<kvm_irqfd*>(arg));
      return 0;
    });
  }
  const kvm_irq_routing_entry* msi(uint32_t gsi) const {
    for (const auto& e : tables.back()) {
      if (e.gsi == gsi && e.type == KVM_IRQ_ROUTING_MSI) return &e;
    }
    return nullptr;
  }
};

}  // namespace

TEST_CASE("msi router: GSIs start above the IOAPIC pins and are reused lowest first") {
  Kvm k;
  MsiRouter r(k.sys, kVmFd);
  CHECK(r.allocate_gsi() == 24u);
  CHECK(r.allocate_gsi() == 25u);
  CHECK(r.allocate_gsi() == 26u);
  REQUIRE(r.release_gsi(25));
  CHECK(r.allocate_gsi() == 25u);
  CHECK_FALSE(r.release_gsi(100));
  MsiRouter small(k.sys, kVmFd, 25);
  CHECK(small.allocate_gsi() == 24u);
  CHECK(small.allocate_gsi().error().err() == ENOSPC);
}

TEST_CASE("msi router: a route pushes the whole table, legacy pins included") {
  Kvm k;
  MsiRouter r(k.sys, kVmFd);
  uint32_t gsi = *r.allocate_gsi();
  CHECK(k.tables.empty());  // allocation alone pushes nothing
  REQUIRE(r.update(gsi, {0xfee01000, 0x4041, {}}, false));
  REQUIRE(k.tables.size() == 1);
  const auto& t = k.tables.back();
  CHECK(t.size() == 24 + 16 + 1);
  int ioapic = 0, pic = 0;
  for (const auto& e : t) {
    if (e.type != KVM_IRQ_ROUTING_IRQCHIP) continue;
    if (e.u.irqchip.irqchip == KVM_IRQCHIP_IOAPIC) {
      ++ioapic;
      CHECK(e.u.irqchip.pin == e.gsi);
    } else {
      ++pic;
      CHECK(e.u.irqchip.pin == e.gsi % 8);
      CHECK(e.u.irqchip.irqchip == (e.gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE));
    }
  }
  CHECK(ioapic == 24);
  CHECK(pic == 16);
  const auto* e = k.msi(gsi);
  REQUIRE(e != nullptr);
  CHECK(e->u.msi.address_lo == 0xfee01000);
  CHECK(e->u.msi.address_hi == 0);
  CHECK(e->u.msi.data == 0x4041);
  CHECK(e->flags == 0);
  // Same message again: nothing to push.
  REQUIRE(r.update(gsi, {0xfee01000, 0x4041, {}}, false));
  CHECK(k.tables.size() == 1);
  CHECK(r.pushes() == 1);
}

TEST_CASE("msi router: device ids and high address bits reach KVM") {
  Kvm k;
  MsiRouter r(k.sys, kVmFd);
  uint32_t gsi = *r.allocate_gsi();
  REQUIRE(r.update(gsi, {0x1fee00000ull, 0x30, 0x0018}, false));
  const auto* e = k.msi(gsi);
  REQUIRE(e != nullptr);
  CHECK(e->flags == KVM_MSI_VALID_DEVID);
  CHECK(e->u.msi.devid == 0x18);
  CHECK(e->u.msi.address_hi == 1);
}

TEST_CASE("msi router: irqfds attach only while routed and unmasked") {
  Kvm k;
  MsiRouter r(k.sys, kVmFd);
  uint32_t gsi = *r.allocate_gsi();
  REQUIRE(r.attach_irqfd(gsi, 42));
  CHECK(k.irqfds.empty());  // no route yet
  CHECK(r.attach_irqfd(gsi, 43).error().err() == EBUSY);

  REQUIRE(r.update(gsi, {0xfee00000, 0x21, {}}, false));
  REQUIRE(k.irqfds.size() == 1);
  CHECK(k.irqfds[0].fd == 42u);
  CHECK(k.irqfds[0].gsi == gsi);
  CHECK(k.irqfds[0].flags == 0u);

  REQUIRE(r.update(gsi, {0xfee00000, 0x21, {}}, true));
  REQUIRE(k.irqfds.size() == 2);
  CHECK(k.irqfds[1].flags == uint32_t(KVM_IRQFD_FLAG_DEASSIGN));
  CHECK(k.tables.size() == 1);  // masking keeps the route

  // Reprogrammed while masked: the route changes, the irqfd stays off.
  REQUIRE(r.update(gsi, {0xfee02000, 0x22, {}}, true));
  CHECK(k.tables.size() == 2);
  CHECK(k.irqfds.size() == 2);

  REQUIRE(r.update(gsi, {0xfee02000, 0x22, {}}, false));
  REQUIRE(k.irqfds.size() == 3);
  CHECK(k.irqfds[2].flags == 0u);

  // New message while live: a push, no irqfd churn.
  REQUIRE(r.update(gsi, {0xfee03000, 0x23, {}}, false));
  CHECK(k.tables.size() == 3);
  CHECK(k.irqfds.size() == 3);

  REQUIRE(r.release_gsi(gsi));
  REQUIRE(k.irqfds.size() == 4);
  CHECK(k.irqfds[3].flags == uint32_t(KVM_IRQFD_FLAG_DEASSIGN));
  CHECK(k.msi(gsi) == nullptr);
}

TEST_CASE("msi router: a failed push keeps the old table and the irqfd") {
  Kvm k;
  MsiRouter r(k.sys, kVmFd);
  uint32_t gsi = *r.allocate_gsi();
  REQUIRE(r.attach_irqfd(gsi, 42));
  REQUIRE(r.update(gsi, {0xfee00000, 0x21, {}}, false));
  k.routing_error = EINVAL;
  // Masked with a new message: detach, push (fails), so attach again.
  auto res = r.update(gsi, {0xfee00000, 0x22, {}}, true);
  REQUIRE_FALSE(res);
  CHECK(res.error().op() == "KVM_SET_GSI_ROUTING");
  // Detached for the push, re-attached after it failed.
  REQUIRE(k.irqfds.size() == 3);
  CHECK(k.irqfds[1].flags == uint32_t(KVM_IRQFD_FLAG_DEASSIGN));
  CHECK(k.irqfds[2].flags == 0u);
  auto table = r.routing_table();
  CHECK(table.size() == 24 + 16 + 1);
  CHECK(table.back().u.msi.data == 0x21);
}

TEST_CASE("msi router: the destructor detaches live irqfds") {
  Kvm k;
  {
    MsiRouter r(k.sys, kVmFd);
    uint32_t gsi = *r.allocate_gsi();
    REQUIRE(r.attach_irqfd(gsi, 42));
    REQUIRE(r.update(gsi, {0xfee00000, 0x21, {}}, false));
  }
  REQUIRE(k.irqfds.size() == 2);
  CHECK(k.irqfds[1].flags == uint32_t(KVM_IRQFD_FLAG_DEASSIGN));
}
