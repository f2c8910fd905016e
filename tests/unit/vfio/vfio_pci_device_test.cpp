// VfioPciDevice (vfio/src/vfio_pci_*.cpp): config-space virtualisation, BARs, MSI/MSI-X, on a
// scripted VFIO device, with vmm's Vm, IoBus and MsiRouter (over FakeSys) behind the
// pci/platform.h interfaces, as in pinless.
#include <doctest/doctest.h>
#include <linux/vfio.h>

#include <cstring>
#include <initializer_list>
#include <map>

#include "fake_vfio.h"
#include "pinless/base/linux_kvm.h"
#include "pinless/vfio/vfio_pci_device.h"
#include "pinless/vmm/io_bus.h"
#include "pinless/vmm/kvm/kvm.h"
#include "pinless/vmm/kvm/msi_router.h"
#include "pinless/vmm/kvm/vm.h"
#include "unit/iommu/fake_iommu.h"

using namespace pinless;
using namespace pinless::testing;
using namespace pinless::vmm;
using pinless::vfio::VfioPciDevice;

namespace {

struct Rig {
  FakeSys sys;
  FakeIommufd iommufd{sys};
  FakeVfioPci pci{sys};
  std::map<uint32_t, kvm_userspace_memory_region> slots;  // live memslots
  std::vector<kvm_irqfd> irqfds;
  int routing_pushes = 0;
  std::vector<kvm_irq_routing_entry> last_routes;

  Rig() {
    sys.on_open("/dev/kvm");
    sys.on_ioctl(KVM_GET_API_VERSION, [](int, unsigned long, void*) { return 12; });
    sys.on_ioctl(KVM_CHECK_EXTENSION, [](int, unsigned long, void*) { return 1; });
    sys.on_ioctl(KVM_GET_VCPU_MMAP_SIZE, [](int, unsigned long, void*) { return 3 * 4096; });
    sys.on_ioctl(KVM_CREATE_VM, [this](int, unsigned long, void*) { return sys.new_fd(); });
    for (unsigned long req : std::initializer_list<unsigned long>{KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR,
                                                                  KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2}) {
      sys.on_ioctl(req, [](int, unsigned long, void*) { return 0; });
    }
    sys.on_ioctl(KVM_SET_USER_MEMORY_REGION, [this](int, unsigned long, void* a) {
      auto* mr = static_cast<kvm_userspace_memory_region*>(a);
      if (mr->memory_size == 0) {
        slots.erase(mr->slot);
      } else {
        slots[mr->slot] = *mr;
      }
      return 0;
    });
    sys.on_ioctl(KVM_IRQFD, [this](int, unsigned long, void* a) {
      irqfds.push_back(*static_cast<kvm_irqfd*>(a));
      return 0;
    });
    sys.on_ioctl(KVM_SET_GSI_ROUTING, [this](int, unsigned long, void* a) {
      auto* r = static_cast<kvm_irq_routing*>(a);
      last_routes.assign(r->entries, r->entries + r->nr);
      return ++routing_pushes, 0;
    });
  }

  std::optional<kvm_irq_routing_entry> route(uint32_t gsi) const {
    for (const auto& e : last_routes) {
      if (e.gsi == gsi) return e;
    }
    return std::nullopt;
  }
};

std::unique_ptr<vfio::VfioDevice> open_dev(Rig& rig, iommu::IommufdBackend& ioas) {
  return vfio::VfioDevice::open_cdev(rig.sys, "/dev/vfio/devices/vfio0", ioas, "0000:00:03.0").value();
}

// The device on `rig` with what BAR placement needs around it: the IOMMU context, a VM for
// the memslots and a bus for the traps. Members in dependency order.
struct PlacedDevice {
  std::unique_ptr<iommu::Iommufd> ctx;
  std::unique_ptr<iommu::IommufdBackend> ioas;
  Kvm kvm;
  Vm vm;
  IoBus bus;
  std::shared_ptr<VfioPciDevice> dev;
  explicit PlacedDevice(Rig& rig)
      : ctx(iommu::Iommufd::open(rig.sys).value()),
        ioas(iommu::IommufdBackend::create(*ctx).value()),
        kvm(Kvm::open(rig.sys).value()),
        vm(Vm::create(kvm).value()),
        dev(VfioPciDevice::create(rig.sys, open_dev(rig, *ioas), {&vm, &bus, nullptr, 32}).value()) {}
};

}  // namespace

TEST_CASE("vfio pci: header from the device, BAR sized from the region, guest can size and move it") {
  Rig rig;
  {
    auto ctx = iommu::Iommufd::open(rig.sys).value();
    auto ioas = iommu::IommufdBackend::create(*ctx).value();
    auto kvm = Kvm::open(rig.sys).value();
    auto vm = Vm::create(kvm).value();
    IoBus bus;
    MsiRouter router(rig.sys, vm.fd());
    {
      auto dev = VfioPciDevice::create(rig.sys, open_dev(rig, *ioas), {&vm, &bus, &router, 32});
      REQUIRE(dev);
      auto& d = **dev;
      CHECK(d.config_read(0x00, 4) == 0x11e81234);
      CHECK(d.config_read(0x3d, 1) == 0);  // no INTx
      CHECK(d.config_read(0x100, 4) == 0);  // extended space hidden
      REQUIRE(d.bars().size() == 1);
      CHECK(d.bars()[0].size == (1u << 20));

      // Sizing: all-ones reads back the size mask.
      d.config_write(0x10, 4, 0xffffffff);
      CHECK(d.config_read(0x10, 4) == 0xfff00000);
      std::vector<pci::BarMove> moves;
      d.set_bar_move_handler([&](const pci::BarMove& m) { moves.push_back(m); });
      d.config_write(0x10, 4, 0xc0000000);
      CHECK(rig.slots.empty());  // memory decode still off
      // Command: memory + bus master reach the device, INTx stays disabled there.
      d.config_write(0x04, 2, pci::kCommandMemory | pci::kCommandBusMaster);
      CHECK(rig.pci.get16(0x04) ==
            (pci::kCommandMemory | pci::kCommandBusMaster | pci::kCommandIntxDisable));
      REQUIRE(moves.size() == 1);
      CHECK(moves[0].to == 0xc0000000);
      REQUIRE(rig.slots.size() == 1);
      CHECK(rig.slots.begin()->second.guest_phys_addr == 0xc0000000);
      CHECK(rig.slots.begin()->second.memory_size == (1u << 20));
      // Relocation: the memslot follows.
      d.config_write(0x10, 4, 0xc0100000);
      REQUIRE(rig.slots.size() == 1);
      CHECK(rig.slots.begin()->second.guest_phys_addr == 0xc0100000);
      d.config_write(0x04, 2, 0);
      CHECK(rig.slots.empty());
      d.config_write(0x04, 2, pci::kCommandMemory);
      CHECK(rig.slots.size() == 1);
    }
    CHECK(rig.slots.empty());  // teardown removes the memslot
    CHECK(rig.sys.live_mappings() == 0);
  }
  CHECK(rig.pci.resets == 2);
}

TEST_CASE("vfio pci: capabilities: MSI and PM kept, others hidden, writes only where allowed") {
  Rig rig;
  rig.pci.config[0x41] = 0x60;
  rig.pci.config[0x60] = 0x10;  // PCIe: hidden
  rig.pci.config[0x61] = 0x80;
  rig.pci.config[0x80] = 0x01;  // PM: kept read-only
  rig.pci.config[0x81] = 0x00;
  rig.pci.config[0xa0] = 0x5a;  // device-specific byte, not in a capability
  auto ctx = iommu::Iommufd::open(rig.sys).value();
  auto ioas = iommu::IommufdBackend::create(*ctx).value();
  auto dev = VfioPciDevice::create(rig.sys, open_dev(rig, *ioas), {nullptr, nullptr, nullptr, 0});
  REQUIRE(dev);
  auto& d = **dev;
  CHECK((d.config_read(0x06, 2) & pci::kStatusCapList) != 0);
  CHECK(d.config_read(0x34, 1) == 0x40);
  CHECK(d.config_read(0x40, 1) == 0x05);
  CHECK(d.config_read(0x41, 1) == 0x80);  // MSI -> PM, PCIe skipped
  CHECK(d.config_read(0x80, 1) == 0x01);
  CHECK(d.config_read(0x81, 1) == 0x00);
  CHECK(d.config_read(0xa0, 1) == 0x5a);  // live from the device
  size_t writes = rig.pci.writes.size();
  d.config_write(0xa0, 1, 0x11);  // dropped
  d.config_write(0x80, 4, 0xffffffff);  // PM read-only
  CHECK(rig.pci.writes.size() == writes);
  CHECK(d.config_read(0x80, 1) == 0x01);
  // MSI control: only enable and MME are writable; the id/next bytes are not.
  d.config_write(0x40, 4, 0xffffffff);
  CHECK(d.config_read(0x40, 2) == 0x8005);
  CHECK((d.config_read(0x42, 2) & 0x0071) == 0x0001);  // MME clamped to what the device has (1)
  CHECK(d.kept_capabilities().size() == 2);
}

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

TEST_CASE("vfio pci: expansion ROM: sized, masked, trapped read-only while enabled and decoded") {
  Rig rig;
  // 5000 bytes of ROM: the BAR is 8 KiB, the last 3192 bytes read all-ones.
  auto& rom = rig.pci.regions[VfioPciDevice::kRomRegion];
  rom.size = 5000;
  rom.flags = VFIO_REGION_INFO_FLAG_READ;
  rom.data.resize(5000);
  for (size_t i = 0; i < rom.data.size(); ++i) rom.data[i] = uint8_t(i * 7 + 1);
  rom.data[0] = 0x55;
  rom.data[1] = 0xaa;
  {
    auto ctx = iommu::Iommufd::open(rig.sys).value();
    auto ioas = iommu::IommufdBackend::create(*ctx).value();
    auto kvm = Kvm::open(rig.sys).value();
    auto vm = Vm::create(kvm).value();
    IoBus bus;
    auto dev = VfioPciDevice::create(rig.sys, open_dev(rig, *ioas), {&vm, &bus, nullptr, 32});
    REQUIRE(dev);
    auto& d = **dev;
    CHECK(d.rom_size() == 0x2000);
    CHECK(d.config_read(0x30, 4) == 0);
    // Sizing: all-ones (with or without the enable bit) reads back ~(size - 1) in 31:11.
    d.config_write(0x30, 4, 0xfffff800);
    CHECK(d.config_read(0x30, 4) == 0xffffe000);
    d.config_write(0x30, 4, 0xffffffff);
    CHECK(d.config_read(0x30, 4) == 0xffffe001);
    d.config_write(0x30, 4, 0);
    // Address masking: bits below the size and the reserved 10:1 are dropped.
    d.config_write(0x30, 4, 0xd0001ffe);
    CHECK(d.config_read(0x30, 4) == 0xd0000000);
    CHECK(d.config_read(0x32, 2) == 0xd000);
    CHECK(d.config_read(0x33, 1) == 0xd0);
    // Enabled, but memory decode off: nothing on the bus.
    d.config_write(0x30, 1, 0x01);  // byte write keeps the address
    CHECK(d.config_read(0x30, 4) == 0xd0000001);
    CHECK_FALSE(d.rom_at());
    CHECK(bus.owner(IoBus::Space::kMmio, 0xd0000000).empty());
    d.config_write(0x04, 2, pci::kCommandMemory);
    REQUIRE(d.rom_at());
    CHECK(*d.rom_at() == 0xd0000000);
    CHECK(bus.owner(IoBus::Space::kMmio, 0xd0000000).find("ROM") != std::string::npos);
    CHECK(bus.owner(IoBus::Space::kMmio, 0xd0001fff).find("ROM") != std::string::npos);
    CHECK(bus.owner(IoBus::Space::kMmio, 0xd0002000).empty());
    uint32_t sig = 0;
    REQUIRE(bus.mmio_read(Gpa(0xd0000000), std::span(reinterpret_cast<uint8_t*>(&sig), 4)));
    CHECK(sig == uint32_t(0x55 | 0xaa << 8 | rom.data[2] << 16 | rom.data[3] << 24));
    uint8_t b = 0;
    REQUIRE(bus.mmio_read(Gpa(0xd0000000 + 4999), std::span(&b, 1)));
    CHECK(b == rom.data[4999]);
    uint64_t tail = 0;  // straddles the end of the real ROM
    REQUIRE(bus.mmio_read(Gpa(0xd0000000 + 4996), std::span(reinterpret_cast<uint8_t*>(&tail), 8)));
    uint64_t want = 0xffffffff00000000ull;
    for (int i = 0; i < 4; ++i) want |= uint64_t(rom.data[4996 + i]) << (8 * i);
    CHECK(tail == want);
    REQUIRE(bus.mmio_read(Gpa(0xd0001ff8), std::span(reinterpret_cast<uint8_t*>(&tail), 8)));
    CHECK(tail == ~uint64_t(0));
    // Writes are dropped, the ROM is unchanged.
    uint32_t junk = 0x12345678;
    bus.mmio_write(Gpa(0xd0000000), std::span(reinterpret_cast<uint8_t*>(&junk), 4));
    CHECK(rom.data[0] == 0x55);
    REQUIRE(bus.mmio_read(Gpa(0xd0000000), std::span(reinterpret_cast<uint8_t*>(&sig), 4)));
    CHECK((sig & 0xffff) == 0xaa55);
    // Move: the trap follows.
    d.config_write(0x30, 4, 0xd0100001);
    CHECK(*d.rom_at() == 0xd0100000);
    CHECK(bus.owner(IoBus::Space::kMmio, 0xd0000000).empty());
    CHECK(bus.owner(IoBus::Space::kMmio, 0xd0100000).find("ROM") != std::string::npos);
    // Memory decode off, then on again.
    d.config_write(0x04, 2, 0);
    CHECK_FALSE(d.rom_at());
    CHECK(bus.owner(IoBus::Space::kMmio, 0xd0100000).empty());
    d.config_write(0x04, 2, pci::kCommandMemory);
    CHECK(d.rom_at());
    // Disable: the trap goes, the address stays in the register.
    d.config_write(0x30, 4, 0xd0100000);
    CHECK_FALSE(d.rom_at());
    CHECK(bus.owner(IoBus::Space::kMmio, 0xd0100000).empty());
    CHECK(d.config_read(0x30, 4) == 0xd0100000);
    // Enabled at 0: not decoded.
    d.config_write(0x30, 4, 0x00000001);
    CHECK_FALSE(d.rom_at());
    // Overlapping another device's range is refused by the bus: left unmapped, no crash.
    IoBus::Space mmio = IoBus::Space::kMmio;
    struct Dummy final : pci::IoDevice {
      void read(uint64_t, std::span<uint8_t> data) override { std::memset(data.data(), 0, data.size()); }
      void write(uint64_t, std::span<const uint8_t>) override {}
    } other;
    REQUIRE(bus.register_mmio(Gpa(0xe0000000), 0x1000, &other, "other"));
    d.config_write(0x30, 4, 0xe0000001);
    CHECK_FALSE(d.rom_at());
    CHECK(bus.owner(mmio, 0xe0000000) == "other");
    d.config_write(0x30, 4, 0xe0100001);  // somewhere free: mapped again
    CHECK(d.rom_at());
    dev->reset();
    CHECK(bus.owner(mmio, 0xe0100000).empty());
    CHECK(bus.unregister_mmio(Gpa(0xe0000000), &other));
  }
}

TEST_CASE("vfio pci: no expansion ROM: 0x30 reads 0 and ignores writes") {
  Rig rig;
  auto ctx = iommu::Iommufd::open(rig.sys).value();
  auto ioas = iommu::IommufdBackend::create(*ctx).value();
  IoBus bus;
  auto dev = VfioPciDevice::create(rig.sys, open_dev(rig, *ioas), {nullptr, &bus, nullptr, 0});
  REQUIRE(dev);
  auto& d = **dev;
  CHECK(d.rom_size() == 0);
  d.config_write(0x30, 4, 0xffffffff);
  CHECK(d.config_read(0x30, 4) == 0);
  d.config_write(0x30, 4, 0xd0000001);
  d.config_write(0x04, 2, pci::kCommandMemory);
  CHECK(d.config_read(0x30, 4) == 0);
  CHECK_FALSE(d.rom_at());
  CHECK(bus.owner(IoBus::Space::kMmio, 0xd0000000).empty());
}

TEST_CASE("vfio pci: a small expansion ROM gets a 2 KiB BAR") {
  Rig rig;
  rig.pci.regions[VfioPciDevice::kRomRegion] = {512, VFIO_REGION_INFO_FLAG_READ, {}, std::vector<uint8_t>(512, 0x55)};
  auto ctx = iommu::Iommufd::open(rig.sys).value();
  auto ioas = iommu::IommufdBackend::create(*ctx).value();
  auto dev = VfioPciDevice::create(rig.sys, open_dev(rig, *ioas), {nullptr, nullptr, nullptr, 0});
  REQUIRE(dev);
  CHECK((*dev)->rom_size() == 2048);
  (*dev)->config_write(0x30, 4, 0xffffffff);
  CHECK((*dev)->config_read(0x30, 4) == 0xfffff801);
  (*dev)->config_write(0x04, 2, pci::kCommandMemory);  // no bus: nothing to trap, no crash
  CHECK_FALSE((*dev)->rom_at());
}

TEST_CASE("vfio pci: an I/O BAR moved onto another device's ports and away again leaves that device in place") {
  Rig rig;
  rig.pci.put32(0x10, 0x1);  // BAR0: I/O, 8 ports
  rig.pci.regions[0] = {8, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE, {}, std::vector<uint8_t>(8, 0x5a)};
  auto ctx = iommu::Iommufd::open(rig.sys).value();
  auto ioas = iommu::IommufdBackend::create(*ctx).value();
  IoBus bus;
  struct Com1 final : pci::IoDevice {
    int reads = 0;
    void read(uint64_t, std::span<uint8_t> data) override { ++reads, std::memset(data.data(), 0x60, data.size()); }
    void write(uint64_t, std::span<const uint8_t>) override {}
  } com1;
  REQUIRE(bus.register_pio(0x3f8, 8, &com1, "serial"));
  auto dev = VfioPciDevice::create(rig.sys, open_dev(rig, *ioas), {nullptr, &bus, nullptr, 0});
  REQUIRE(dev);
  auto& d = **dev;
  d.config_write(0x04, 2, pci::kCommandIo);
  // The guest programs the BAR over COM1: the bus refuses the trap, COM1 keeps its ports.
  d.config_write(0x10, 4, 0x3f8);
  CHECK(bus.owner(IoBus::Space::kPio, 0x3f8) == "serial");
  // Moving it away must not take COM1's registration with it.
  d.config_write(0x10, 4, 0x1000);
  CHECK(bus.owner(IoBus::Space::kPio, 0x3f8) == "serial");
  uint8_t v = 0;
  CHECK(bus.pio_read(0x3f8 + 5, std::span(&v, 1)));
  CHECK(v == 0x60);
  CHECK(com1.reads == 1);
  // The BAR itself works at its new address.
  CHECK(bus.pio_read(0x1000, std::span(&v, 1)));
  CHECK(v == 0x5a);
  // Decode off and on again: still only the BAR's own trap comes and goes.
  d.config_write(0x04, 2, 0);
  CHECK(bus.owner(IoBus::Space::kPio, 0x1000).empty());
  CHECK(bus.owner(IoBus::Space::kPio, 0x3f8) == "serial");
}

TEST_CASE("vfio pci: a memslot KVM refused is not removed when the BAR moves on") {
  Rig rig;
  // KVM refuses the BAR at 0xd0000000 (as it would over another memslot); removals are counted.
  std::vector<uint32_t> removed;
  rig.sys.on_ioctl(KVM_SET_USER_MEMORY_REGION, [&](int, unsigned long, void* a) {
    auto* mr = static_cast<kvm_userspace_memory_region*>(a);
    if (mr->memory_size == 0) return removed.push_back(mr->slot), rig.slots.erase(mr->slot), 0;
    if (mr->guest_phys_addr == 0xd0000000) return -EEXIST;
    rig.slots[mr->slot] = *mr;
    return 0;
  });
  PlacedDevice placed(rig);
  auto& d = *placed.dev;
  d.config_write(0x04, 2, pci::kCommandMemory);
  d.config_write(0x10, 4, 0xd0000000);
  CHECK(rig.slots.empty());
  d.config_write(0x10, 4, 0xc0000000);
  CHECK(removed.empty());  // nothing of ours was there to remove
  REQUIRE(rig.slots.size() == 1);
  CHECK(rig.slots.begin()->second.guest_phys_addr == 0xc0000000);
  d.config_write(0x04, 2, 0);
  CHECK(removed.size() == 1);
  CHECK(rig.slots.empty());
}
