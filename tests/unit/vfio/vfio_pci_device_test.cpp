// VfioPciDevice (vfio/src/vfio_pci_*.cpp): the config header and capabilities the guest sees,
// and BAR sizing and placement, on a scripted VFIO device (vfio_pci_rig.h).
#include <doctest/doctest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include "vfio_pci_rig.h"

using namespace pinless;
using namespace pinless::testing;
using namespace pinless::testing::vfio_pci;
using namespace pinless::vmm;
using pinless::vfio::VfioPciDevice;

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
  rig.refuse_slot_at = 0xd0000000;
  PlacedDevice placed(rig);
  auto& d = *placed.dev;
  d.config_write(0x04, 2, pci::kCommandMemory);
  d.config_write(0x10, 4, 0xd0000000);
  CHECK(rig.slots.empty());
  d.config_write(0x10, 4, 0xc0000000);
  CHECK(rig.removed_slots.empty());  // nothing of ours was there to remove
  REQUIRE(rig.slots.size() == 1);
  CHECK(rig.slots.begin()->second.guest_phys_addr == 0xc0000000);
  d.config_write(0x04, 2, 0);
  CHECK(rig.removed_slots.size() == 1);
  CHECK(rig.slots.empty());
}

namespace {
// The capability list as a guest walks it: (offset, id) pairs.
std::vector<std::pair<uint32_t, uint32_t>> guest_walk(VfioPciDevice& d) {
  std::vector<std::pair<uint32_t, uint32_t>> caps;
  for (uint32_t off = d.config_read(0x34, 1) & 0xfc; off >= 0x40 && caps.size() < 48;) {
    uint32_t header = d.config_read(uint16_t(off), 2);
    caps.push_back({off, header & 0xff});
    off = (header >> 8) & 0xfc;
  }
  return caps;
}
}  // namespace

// Found by the vfio_config fuzz target (corpus: crash-pm-inside-msix-cap).
TEST_CASE("vfio pci: a capability inside another one is hidden, so relinking cannot expose hidden ones") {
  Rig rig;
  rig.pci.add_msix(4, 0);       // MSI at 0x40 -> MSI-X at 0x50..0x5b
  rig.pci.config[0x51] = 0x58;  // next: a PM header inside MSI-X's PBA register
  rig.pci.config[0x58] = 0x01;  // PM id (PBA BIR 1)
  rig.pci.config[0x59] = 0x60;  // PM next: a hidden PCIe capability
  rig.pci.config[0x60] = 0x10;
  auto ctx = iommu::Iommufd::open(rig.sys).value();
  auto ioas = iommu::IommufdBackend::create(*ctx).value();
  auto dev = VfioPciDevice::create(rig.sys, open_dev(rig, *ioas), {nullptr, nullptr, nullptr, 0});
  REQUIRE(dev);
  auto& d = **dev;
  CHECK(d.kept_capabilities().size() == 2);  // MSI and MSI-X; the PM inside MSI-X is not kept
  CHECK(guest_walk(d) == std::vector<std::pair<uint32_t, uint32_t>>{{0x40, 0x05}, {0x50, 0x11}});
  CHECK(d.config_read(0x51, 1) == 0);
}

TEST_CASE("vfio pci: an MSI capability running past 0xff is hidden and cannot clobber the next one") {
  Rig rig;
  rig.pci.config[0x34] = 0xf0;
  rig.pci.config[0x40] = 0;
  rig.pci.config[0xf0] = 0x05;  // MSI, 64-bit with per-vector masks: 24 bytes, past 0xff
  rig.pci.config[0xf1] = 0xf4;
  rig.pci.put16(0xf2, 0x0180);
  rig.pci.config[0xf4] = 0x01;  // PM, where the MSI address register would be
  rig.pci.config[0xf5] = 0x00;
  auto ctx = iommu::Iommufd::open(rig.sys).value();
  auto ioas = iommu::IommufdBackend::create(*ctx).value();
  auto dev = VfioPciDevice::create(rig.sys, open_dev(rig, *ioas), {nullptr, nullptr, nullptr, 0});
  REQUIRE(dev);
  auto& d = **dev;
  CHECK_FALSE(d.msi());
  CHECK(d.kept_capabilities().size() == 1);
  CHECK(guest_walk(d) == std::vector<std::pair<uint32_t, uint32_t>>{{0xf4, 0x01}});
  d.config_write(0xf4, 4, 0xffffffff);  // the PM header stays read-only
  CHECK(d.config_read(0xf4, 2) == 0x0001);
}

namespace {
struct Ecam final : pci::IoDevice {
  void read(uint64_t, std::span<uint8_t> data) override { std::memset(data.data(), 0x11, data.size()); }
  void write(uint64_t, std::span<const uint8_t>) override {}
};
}  // namespace

// Seen while writing the hostile guest (guest-images/src/hostile.c): KVM refuses a memslot
// only over another memslot, so edu's 1 MiB BAR moved to 0xe0000000 became a memslot over ECAM
// bus 0, and KVM would serve the guest's config accesses from the edu's registers instead.
TEST_CASE("vfio pci: a memory BAR over a range claimed on the bus (ECAM) is refused and maps again when moved back") {
  Rig rig;
  PlacedDevice placed(rig);
  Ecam ecam;
  REQUIRE(placed.bus.register_mmio(Gpa(0xe0000000), 0x10000000, &ecam, "pci-ecam"));
  auto& d = *placed.dev;
  d.config_write(0x04, 2, pci::kCommandMemory);
  d.config_write(0x10, 4, 0xc0000000);
  REQUIRE(rig.slots.size() == 1);
  // The mapped BAR is claimed on the bus as well, under its own name.
  CHECK(placed.bus.owner(IoBus::Space::kMmio, 0xc0000000).find("BAR0") != std::string::npos);
  d.config_write(0x10, 4, 0xe0000000);
  CHECK(rig.slots.empty());
  CHECK(placed.bus.owner(IoBus::Space::kMmio, 0xe0000000) == "pci-ecam");
  uint8_t v = 0;
  CHECK(placed.bus.mmio_read(Gpa(0xe0000000), std::span(&v, 1)));
  CHECK(v == 0x11);
  CHECK(placed.bus.owner(IoBus::Space::kMmio, 0xc0000000).empty());
  // Back where it was: mapped and claimed again; decode off releases both.
  d.config_write(0x10, 4, 0xc0000000);
  REQUIRE(rig.slots.size() == 1);
  CHECK(rig.slots.begin()->second.guest_phys_addr == 0xc0000000);
  d.config_write(0x04, 2, 0);
  CHECK(rig.slots.empty());
  CHECK(placed.bus.owner(IoBus::Space::kMmio, 0xc0000000).empty());
  CHECK(placed.bus.owner(IoBus::Space::kMmio, 0xe0000000) == "pci-ecam");
}

TEST_CASE("vfio pci: a BAR KVM refuses gives its bus claim back, so another device can take the range") {
  Rig rig;
  rig.refuse_slot_at = 0xd0000000;  // as over guest RAM
  PlacedDevice placed(rig);
  auto& d = *placed.dev;
  d.config_write(0x04, 2, pci::kCommandMemory);
  d.config_write(0x10, 4, 0xd0000000);
  CHECK(rig.slots.empty());
  CHECK(placed.bus.owner(IoBus::Space::kMmio, 0xd0000000).empty());
  Ecam other;
  CHECK(placed.bus.register_mmio(Gpa(0xd0000000), 0x1000, &other, "other"));
}

// A guest that moves its BAR onto a claimed range over and over gets a warning per refusal
// through the device's RateLimit{5, 10000}: 7 lines for 20000 refusals.
TEST_CASE("vfio pci: a flood of refused BAR moves logs only what the rate limit lets through") {
  Rig rig;
  PlacedDevice placed(rig);
  Ecam ecam;
  REQUIRE(placed.bus.register_mmio(Gpa(0xe0000000), 0x10000000, &ecam, "pci-ecam"));
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  auto log = logger("vfio");
  log->sinks().push_back(sink);
  auto& d = *placed.dev;
  d.config_write(0x04, 2, pci::kCommandMemory);
  constexpr uint64_t kMoves = 20000;
  for (uint64_t i = 0; i < kMoves; ++i) {
    d.config_write(0x10, 4, 0xe0000000);
    d.config_write(0x10, 4, 0xc0000000);
  }
  log->sinks().pop_back();
  REQUIRE(rig.slots.size() == 1);  // still mapped where it belongs
  std::string text = out.str();
  uint64_t lines = uint64_t(std::count(text.begin(), text.end(), '\n'));
  CHECK(lines == RateLimit::allowed_of(kMoves, 5, 10000));
  CHECK(lines == 7);
  CHECK(text.find("overlaps pci-ecam") != std::string::npos);
}

// What guest-images/src/hostile.c does through config space, replayed on the rig: random values
// at every offset, in every width, with a BAR landing on ECAM, the IOAPIC or the LAPIC now and
// then. No memslot may ever cover a range the bus has given to someone else, those ranges keep
// their owners, and the header written back maps the BAR where it was.
TEST_CASE("vfio pci: random writes at every config offset never put a memslot over a bus claim") {
  Rig rig;
  PlacedDevice placed(rig);
  Ecam ecam, ioapic, lapic;
  struct Claimed {
    uint64_t at, size;
    const char* name;
  };
  const Claimed claimed[] = {{0xe0000000, 0x10000000, "pci-ecam"},
                             {0xfec00000, 0x1000, "ioapic (in-kernel)"},
                             {0xfee00000, 0x100000, "lapic/msi (in-kernel)"}};
  REQUIRE(placed.bus.register_mmio(Gpa(claimed[0].at), claimed[0].size, &ecam, claimed[0].name));
  REQUIRE(placed.bus.register_mmio(Gpa(claimed[1].at), claimed[1].size, &ioapic, claimed[1].name));
  REQUIRE(placed.bus.register_mmio(Gpa(claimed[2].at), claimed[2].size, &lapic, claimed[2].name));
  auto& d = *placed.dev;
  uint64_t x = 0x9e3779b97f4a7c15ull;
  auto rnd = [&x] { return x ^= x << 13, x ^= x >> 7, x ^= x << 17, x; };
  const uint32_t targets[] = {0xe0000000, 0xe0100000, 0xfec00000, 0xfee00000};
  int over = 0;
  for (int round = 0; round < 8; ++round) {
    for (uint16_t off = 0; off < 256; ++off) {
      uint8_t size = uint8_t(1u << (rnd() % 3));
      uint16_t at = uint16_t(off & ~(size - 1));
      uint32_t v = uint32_t(rnd());
      if (at == 0x10 && rnd() % 2) v = targets[rnd() % 4];  // aimed, not left to chance
      if (at == 0x04) v |= pci::kCommandMemory;
      d.config_write(at, size, v);
      for (const auto& [slot, mr] : rig.slots) {
        for (const auto& c : claimed) {
          if (mr.guest_phys_addr < c.at + c.size && c.at < mr.guest_phys_addr + mr.memory_size) ++over;
        }
      }
    }
  }
  CHECK(over == 0);
  for (const auto& c : claimed) CHECK(placed.bus.owner(IoBus::Space::kMmio, c.at) == c.name);
  d.config_write(0x04, 2, 0);
  d.config_write(0x10, 4, 0xc0000000);
  d.config_write(0x04, 2, pci::kCommandMemory);
  REQUIRE(rig.slots.size() == 1);
  CHECK(rig.slots.begin()->second.guest_phys_addr == 0xc0000000);
}
