// VfioPciDevice expansion ROM: the BAR at 0x30 sized, masked and trapped read-only on VFIO's
// ROM region while enabled and decoded (vfio_pci_rig.h).
#include <doctest/doctest.h>

#include <cstring>

#include "vfio_pci_rig.h"

using namespace pinless;
using namespace pinless::testing;
using namespace pinless::testing::vfio_pci;
using namespace pinless::vmm;
using pinless::vfio::VfioPciDevice;

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
