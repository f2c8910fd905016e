#include <doctest/doctest.h>

#include <vector>

#include "pinless/pci/config_space.h"

using namespace pinless::pci;

namespace {

PciIdentity test_id() {
  PciIdentity id;
  id.vendor_id = 0x1af4;
  id.device_id = 0x1041;
  id.class_code = 0x020000;
  id.revision = 1;
  id.subsystem_vendor_id = 0x1af4;
  id.subsystem_id = 0x0001;
  id.interrupt_pin = 1;
  return id;
}

struct Moves {
  std::vector<BarMove> log;
  BarMoveFn fn() {
    return [this](const BarMove& m) { log.push_back(m); };
  }
};

}  // namespace

TEST_CASE("pci config: identity registers are read-only") {
  PciConfigSpace c(test_id());
  CHECK(c.read(kVendorId, 4) == 0x10411af4);
  CHECK(c.read(kRevisionId, 4) == 0x02000001);
  CHECK(c.read(kSubsystemVendorId, 4) == 0x00011af4);
  CHECK(c.read(kInterruptPin, 1) == 1);
  c.write(kVendorId, 4, 0xdeadbeef);
  c.write(kClassCode, 1, 0xff);
  c.write(kInterruptPin, 1, 3);
  CHECK(c.read(kVendorId, 4) == 0x10411af4);
  CHECK(c.read(kRevisionId, 4) == 0x02000001);
  CHECK(c.read(kInterruptPin, 1) == 1);
  c.write(kInterruptLine, 1, 11);  // interrupt line is the guest's scratch register
  CHECK(c.read(kInterruptLine, 1) == 11);
}

TEST_CASE("pci config: command bits are writable, status bits write-1-to-clear") {
  PciConfigSpace c(test_id());
  c.write(kCommand, 2, 0xffff);
  CHECK(c.read(kCommand, 2) == 0x0547);
  c.set_u16(kStatus, 0x2000 | 0x0010);  // received master abort + capability list
  c.write(kStatus, 2, 0x0010);          // writing 1 to a read-only bit changes nothing
  CHECK(c.read(kStatus, 2) == 0x2010);
  c.write(kStatus, 2, 0x2000);
  CHECK(c.read(kStatus, 2) == 0x0010);
}

TEST_CASE("pci config: BAR sizing with all-ones for I/O, 32-bit and 64-bit BARs") {
  PciConfigSpace c(test_id());
  REQUIRE(c.add_bar(0, BarKind::kMem32, 0x1000));
  REQUIRE(c.add_bar(1, BarKind::kIo, 0x20));
  REQUIRE(c.add_bar(2, BarKind::kMem64, 8ull << 30, true));
  for (uint16_t off = kBar0; off < kBar0 + 24; off += 4) c.write(off, 4, 0xffffffff);
  CHECK(c.read(kBar0, 4) == 0xfffff000);
  CHECK(c.read(kBar0 + 4, 4) == 0xffffffe1);
  CHECK(c.read(kBar0 + 8, 4) == 0x0000000c);   // 64-bit, prefetchable; size >= 4 GiB
  CHECK(c.read(kBar0 + 12, 4) == 0xfffffffe);  // 8 GiB
  CHECK(c.read(kBar0 + 16, 4) == 0);           // unimplemented BARs stay 0
  CHECK(c.read(kRomBar, 4) == 0);
  c.write(kBar0, 4, 0xc0001234);
  CHECK(c.read(kBar0, 4) == 0xc0001000);
  auto bars = c.bars();
  REQUIRE(bars.size() == 3);
  CHECK(bars[2].index == 2);
  CHECK(bars[2].kind == BarKind::kMem64);
  CHECK(bars[2].size == 8ull << 30);
}

TEST_CASE("pci config: add_bar rejects bad BARs") {
  PciConfigSpace c(test_id());
  CHECK_FALSE(c.add_bar(0, BarKind::kMem32, 0x1800));
  CHECK_FALSE(c.add_bar(5, BarKind::kMem64, 0x1000));
  CHECK_FALSE(c.add_bar(6, BarKind::kMem32, 0x1000));
  CHECK_FALSE(c.add_bar(0, BarKind::kIo, 0x1000));
  CHECK_FALSE(c.add_bar(0, BarKind::kMem32, 8));
  REQUIRE(c.add_bar(0, BarKind::kMem64, 0x4000));
  CHECK_FALSE(c.add_bar(1, BarKind::kMem32, 0x1000));  // upper half of BAR 0
}

TEST_CASE("pci config: BAR moves follow the address and the command register") {
  PciConfigSpace c(test_id());
  Moves m;
  c.set_bar_move_handler(m.fn());
  REQUIRE(c.add_bar(0, BarKind::kMem32, 0x1000));
  REQUIRE(c.add_bar(2, BarKind::kMem64, 0x4000));
  REQUIRE(c.add_bar(4, BarKind::kIo, 0x10));
  c.write(kBar0, 4, 0xc0000000);
  c.write(kBar0 + 8, 4, 0x00000000);
  c.write(kBar0 + 12, 4, 0x00000001);  // BAR 2 at 4 GiB
  c.write(kBar0 + 16, 4, 0x1000);
  CHECK(m.log.empty());  // decoding is off

  c.write(kCommand, 2, kCommandMemory);
  REQUIRE(m.log.size() == 2);
  CHECK(m.log[0].bar.index == 0);
  CHECK_FALSE(m.log[0].from.has_value());
  CHECK(m.log[0].to == 0xc0000000);
  CHECK(m.log[1].bar.index == 2);
  CHECK(m.log[1].to == 0x100000000ull);
  CHECK(c.decoded(4) == std::nullopt);  // I/O space still off

  c.write(kCommand, 2, kCommandMemory | kCommandIo);
  REQUIRE(m.log.size() == 3);
  CHECK(m.log[2].bar.kind == BarKind::kIo);
  CHECK(m.log[2].to == 0x1000);

  m.log.clear();
  c.write(kBar0, 4, 0xc0010000);  // moved while decoding
  REQUIRE(m.log.size() == 1);
  CHECK(m.log[0].from == 0xc0000000);
  CHECK(m.log[0].to == 0xc0010000);

  m.log.clear();
  c.write(kCommand, 2, 0);
  CHECK(m.log.size() == 3);
  for (const auto& mv : m.log) CHECK_FALSE(mv.to.has_value());
}

TEST_CASE("pci config: a BAR being sized is not decoded, and comes back afterwards") {
  PciConfigSpace c(test_id());
  Moves m;
  c.set_bar_move_handler(m.fn());
  REQUIRE(c.add_bar(0, BarKind::kMem32, 0x1000));
  REQUIRE(c.set_bar_address(0, 0xc0000000));
  c.write(kCommand, 2, kCommandMemory);
  m.log.clear();
  c.write(kBar0, 4, 0xffffffff);
  REQUIRE(m.log.size() == 1);
  CHECK_FALSE(m.log[0].to.has_value());
  c.write(kBar0, 4, 0xc0000000);
  REQUIRE(m.log.size() == 2);
  CHECK(m.log[1].to == 0xc0000000);
}

TEST_CASE("pci config: an I/O BAR beyond 64 KiB is not decoded") {
  PciConfigSpace c(test_id());
  REQUIRE(c.add_bar(0, BarKind::kIo, 0x100));
  c.write(kCommand, 2, kCommandIo);
  c.write(kBar0, 4, 0x00123400);  // guest garbage above the port space
  CHECK_FALSE(c.decoded(0).has_value());
  c.write(kBar0, 4, 0xc000);
  CHECK(c.decoded(0) == 0xc000);
}

TEST_CASE("pci config: capability list") {
  PciConfigSpace c(test_id());
  CHECK((c.read(kStatus, 2) & kStatusCapList) == 0);
  const uint8_t vendor_body[] = {0x06, 0xaa, 0xbb, 0xcc};  // length + payload
  const uint8_t msi_body[] = {0x00, 0x00, 0, 0, 0, 0, 0, 0};
  const uint8_t msi_mask[] = {0x01, 0x00, 0xfc, 0xff, 0xff, 0xff, 0xff, 0xff};
  auto a = c.add_capability(kCapVendor, vendor_body);
  auto b = c.add_capability(kCapMsi, msi_body, msi_mask);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(*a == 0x40);
  CHECK(*b == 0x48);  // dword aligned after 6 bytes
  CHECK((c.read(kStatus, 2) & kStatusCapList) != 0);
  CHECK(c.read(kCapabilitiesPointer, 1) == 0x40);
  CHECK(c.read(0x40, 2) == (0x4800 | kCapVendor));
  CHECK(c.read(0x48, 2) == kCapMsi);  // end of list
  CHECK(c.find_capability(kCapMsi) == 0x48);
  CHECK_FALSE(c.find_capability(kCapMsix).has_value());
  c.write(0x48, 4, 0xffffffff);  // id and next are read-only; control bit 0 writable
  CHECK(c.read(0x48, 4) == 0x00010005);
  c.write(0x42, 1, 0x55);  // vendor cap body is read-only
  CHECK(c.read(0x42, 1) == 0x06);
  std::vector<uint8_t> big(200, 0);
  CHECK_FALSE(c.add_capability(kCapVendor, big));
}

TEST_CASE("pci config: bad sizes and offsets from the guest") {
  PciConfigSpace c(test_id());
  CHECK(c.read(kVendorId, 3) == 0xffffffff);
  CHECK(c.read(1, 2) == 0xffffffff);
  CHECK(c.read(2, 4) == 0xffffffff);
  CHECK(c.read(4096, 1) == 0xffffffff);
  CHECK(c.read(4094, 4) == 0xffffffff);
  c.write(kCommand, 3, 0xffffff);
  c.write(4095, 2, 0xffff);
  CHECK(c.read(kCommand, 2) == 0);
  CHECK(c.read(0x100, 4) == 0);  // no extended capabilities
}
