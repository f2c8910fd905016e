// VfioPciDevice interrupts: MSI through SET_IRQS and KVM routes, the MSI-X table trapped and
// emulated (vfio_pci_rig.h).
#include <doctest/doctest.h>

#include <cstring>

#include "vfio_pci_rig.h"

using namespace pinless;
using namespace pinless::testing;
using namespace pinless::testing::vfio_pci;
using namespace pinless::vmm;
using pinless::vfio::VfioPciDevice;

TEST_CASE("vfio pci: MSI enable binds an eventfd with SET_IRQS and routes it through KVM") {
  Rig rig;
  {
    auto ctx = iommu::Iommufd::open(rig.sys).value();
    auto ioas = iommu::IommufdBackend::create(*ctx).value();
    auto kvm = Kvm::open(rig.sys).value();
    auto vm = Vm::create(kvm).value();
    MsiRouter router(rig.sys, vm.fd());
    size_t base = rig.sys.open_fds();
    auto dev = VfioPciDevice::create(rig.sys, open_dev(rig, *ioas), {&vm, nullptr, &router, 32});
    REQUIRE(dev);
    auto& d = **dev;
    d.config_write(0x44, 4, 0xfee00000);
    d.config_write(0x48, 4, 0);
    d.config_write(0x4c, 2, 0x00f7);
    CHECK(rig.pci.irq_sets.empty());
    d.config_write(0x42, 2, 0x0001);  // enable
    REQUIRE(rig.pci.irq_sets.size() == 1);
    CHECK(rig.pci.irq_sets[0].index == vfio::kMsiIrq);
    REQUIRE(rig.pci.irq_sets[0].fds.size() == 1);
    int efd = rig.pci.irq_sets[0].fds[0];
    auto r = rig.route(MsiRouter::kLegacyGsis);
    REQUIRE(r);
    CHECK(r->u.msi.address_lo == 0xfee00000);
    CHECK(r->u.msi.data == 0xf7);
    REQUIRE_FALSE(rig.irqfds.empty());
    CHECK(int(rig.irqfds.back().fd) == efd);
    CHECK(rig.irqfds.back().flags == 0);  // attached
    // Disable: VFIO told to stop, irqfd detached (interrupts stay pending in the eventfd).
    d.config_write(0x42, 2, 0x0000);
    REQUIRE(rig.pci.irq_sets.size() == 2);
    CHECK(rig.pci.irq_sets[1].count == 0);
    CHECK(rig.irqfds.back().flags == uint32_t(KVM_IRQFD_FLAG_DEASSIGN));
    dev->reset();
    CHECK(rig.sys.open_fds() == base);  // device fd closed
    CHECK(rig.sys.count_what("eventfd") == 1);
    CHECK(rig.pci.resets == 2);
  }
}

TEST_CASE("vfio pci: the MSI-X table page is trapped and emulated, the rest of the BAR mapped") {
  Rig rig;
  rig.pci.add_msix(4, 0);
  rig.pci.irq_counts[1] = 0;  // no MSI: only MSI-X
  rig.pci.regions[0].size = 0x4000;
  {
    auto ctx = iommu::Iommufd::open(rig.sys).value();
    auto ioas = iommu::IommufdBackend::create(*ctx).value();
    auto kvm = Kvm::open(rig.sys).value();
    auto vm = Vm::create(kvm).value();
    IoBus bus;
    MsiRouter router(rig.sys, vm.fd());
    size_t base = rig.sys.open_fds();
    auto dev = VfioPciDevice::create(rig.sys, open_dev(rig, *ioas), {&vm, &bus, &router, 32});
    REQUIRE(dev);
    auto& d = **dev;
    REQUIRE(d.msix());
    CHECK(d.kept_capabilities().size() == 1);  // MSI hidden (no MSI irqs), MSI-X kept
    CHECK(d.config_read(0x34, 1) == 0x50);
    d.config_write(0x10, 4, 0xc0000000);
    d.config_write(0x04, 2, pci::kCommandMemory);
    // Page 0 (table + PBA at 0x800) trapped on the bus, pages 1..3 in one memslot.
    CHECK(bus.owner(IoBus::Space::kMmio, 0xc0000000).find("vfio") != std::string::npos);
    REQUIRE(rig.slots.size() == 1);
    CHECK(rig.slots.begin()->second.guest_phys_addr == 0xc0001000);
    CHECK(rig.slots.begin()->second.memory_size == 0x3000);

    // Program vector 1 through the bus, then enable MSI-X.
    uint32_t lo = 0xfee00000, data = 0x41, ctl = 0;
    REQUIRE(bus.mmio_write(Gpa(0xc0000010), std::span(reinterpret_cast<uint8_t*>(&lo), 4)));
    REQUIRE(bus.mmio_write(Gpa(0xc0000018), std::span(reinterpret_cast<uint8_t*>(&data), 4)));
    REQUIRE(bus.mmio_write(Gpa(0xc000001c), std::span(reinterpret_cast<uint8_t*>(&ctl), 4)));
    uint32_t back = 0;
    REQUIRE(bus.mmio_read(Gpa(0xc0000018), std::span(reinterpret_cast<uint8_t*>(&back), 4)));
    CHECK(back == 0x41);
    d.config_write(0x52, 2, pci::MsixTable::kControlEnable);
    REQUIRE(rig.pci.irq_sets.size() == 1);
    CHECK(rig.pci.irq_sets[0].index == vfio::kMsixIrq);
    CHECK(rig.pci.irq_sets[0].fds.size() == 4);
    auto r = rig.route(MsiRouter::kLegacyGsis + 1);
    REQUIRE(r);
    CHECK(r->u.msi.data == 0x41);
    // Bad guest accesses to the table are ignored (1-byte, past the end of the BAR).
    uint8_t one = 0xaa;
    bus.mmio_write(Gpa(0xc0000011), std::span(&one, 1));
    uint64_t far = 0;
    bus.mmio_read(Gpa(0xc0000ff8), std::span(reinterpret_cast<uint8_t*>(&far), 8));
    dev->reset();
    CHECK(rig.sys.open_fds() == base);
    CHECK(rig.slots.empty());
    CHECK(bus.owner(IoBus::Space::kMmio, 0xc0000000).empty());
  }
  CHECK(rig.sys.live_mappings() == 0);
}
