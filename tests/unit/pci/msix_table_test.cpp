#include <doctest/doctest.h>

#include <vector>

#include "pinless/pci/config_space.h"
#include "pinless/pci/msix_table.h"

using namespace pinless::pci;

namespace {

struct Change {
  uint16_t vector;
  MsiMessage msg;
  bool masked;
};

struct Table {
  std::vector<Change> changes;
  MsixTable t = *MsixTable::create(
      4, [this](uint16_t v, const MsiMessage& m, bool masked) { changes.push_back({v, m, masked}); });

  void w32(uint64_t off, uint32_t v) {
    uint8_t b[4] = {uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)};
    t.table_write(off, b);
  }
  uint64_t r(uint64_t off, size_t size) {
    uint8_t b[8] = {};
    t.table_read(off, std::span(b, size));
    uint64_t v = 0;
    for (size_t i = 0; i < size; ++i) v |= uint64_t(b[i]) << (8 * i);
    return v;
  }
  // What Linux does for one vector: program address and data, then unmask.
  void program(uint16_t v, uint64_t addr, uint32_t data) {
    w32(v * 16 + 0, uint32_t(addr));
    w32(v * 16 + 4, uint32_t(addr >> 32));
    w32(v * 16 + 8, data);
    w32(v * 16 + 12, 0);
  }
};

}  // namespace

TEST_CASE("msix: sizes and limits") {
  CHECK_FALSE(MsixTable::create(0));
  CHECK_FALSE(MsixTable::create(2049));
  auto t = MsixTable::create(65);
  REQUIRE(t);
  CHECK(t->table_bytes() == 65 * 16);
  CHECK(t->pba_bytes() == 16);
}

TEST_CASE("msix: vectors come out of reset masked; entries read back") {
  Table x;
  CHECK(x.r(12, 4) == 1);
  x.w32(0, 0xfee01000);
  x.w32(8, 0x4041);
  CHECK(x.r(0, 8) == 0xfee01000);
  CHECK(x.r(8, 8) == (1ull << 32 | 0x4041));
  CHECK(x.changes.empty());  // still masked (and MSI-X disabled)
}

TEST_CASE("msix: changes are reported when the effective mask or message changes") {
  Table x;
  x.t.set_control(MsixTable::kControlEnable);
  CHECK(x.changes.empty());  // every vector still masked by its own bit
  x.program(1, 0xfee02000, 0x31);
  REQUIRE(x.changes.size() == 1);
  CHECK(x.changes[0].vector == 1);
  CHECK_FALSE(x.changes[0].masked);
  CHECK(x.changes[0].msg.address == 0xfee02000);
  CHECK(x.changes[0].msg.data == 0x31);

  x.t.set_control(MsixTable::kControlEnable | MsixTable::kControlFunctionMask);
  REQUIRE(x.changes.size() == 2);
  CHECK(x.changes[1].masked);
  CHECK(x.t.masked(1));
  x.t.set_control(MsixTable::kControlEnable);
  REQUIRE(x.changes.size() == 3);
  CHECK_FALSE(x.changes[2].masked);

  x.w32(16 + 8, 0x32);  // data changed while unmasked
  REQUIRE(x.changes.size() == 4);
  CHECK(x.changes[3].msg.data == 0x32);
  x.w32(16 + 12, 1);  // per-vector mask
  REQUIRE(x.changes.size() == 5);
  CHECK(x.changes[4].masked);
  x.w32(16 + 12, 0xfffffffe);  // reserved bits, mask clear
  CHECK(x.r(16 + 12, 4) == 0);
  x.t.set_control(0);  // MSI-X off masks everything that was live
  CHECK(x.changes.back().masked);
}

TEST_CASE("msix: 8-byte writes update two dwords at once") {
  Table x;
  x.t.set_control(MsixTable::kControlEnable);
  uint8_t b[8] = {0x55, 0, 0, 0, 0, 0, 0, 0};  // data 0x55, vector control 0 (unmasked)
  x.t.table_write(2 * 16 + 8, b);
  REQUIRE(x.changes.size() == 1);
  CHECK(x.changes[0].vector == 2);
  CHECK(x.changes[0].msg.data == 0x55);
}

TEST_CASE("msix: malformed guest accesses are ignored") {
  Table x;
  uint8_t b[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  x.t.table_write(0, std::span<const uint8_t>(b, 2));   // too narrow
  x.t.table_write(2, std::span<const uint8_t>(b, 4));   // misaligned
  x.t.table_write(4, std::span<const uint8_t>(b, 8));   // misaligned qword
  x.t.table_write(64, std::span<const uint8_t>(b, 4));  // past the table
  x.t.table_write(~0ull - 3, std::span<const uint8_t>(b, 4));
  CHECK(x.r(0, 8) == 0);
  CHECK(x.r(64, 4) == 0xffffffff);
  CHECK(x.r(1, 4) == 0xffffffff);
  CHECK(x.t.entry(9).masked);  // out-of-range vector: a masked blank entry
}

TEST_CASE("msix: the PBA reflects pending bits and is read-only") {
  auto t = MsixTable::create(70);
  REQUIRE(t);
  t->set_pending(1, true);
  t->set_pending(65, true);
  uint8_t b[8] = {};
  t->pba_read(0, std::span(b, 8));
  CHECK(b[0] == 0x02);
  t->pba_read(8, std::span(b, 4));
  CHECK(b[0] == 0x02);
  const uint8_t zeros[8] = {};
  t->pba_write(0, zeros);
  CHECK(t->pending(1));
  t->set_pending(1, false);
  CHECK_FALSE(t->pending(1));
  t->pba_read(16, std::span(b, 4));  // past the PBA
  CHECK(b[0] == 0xff);
}

TEST_CASE("msix: capability layout and writable control bits") {
  PciIdentity id;
  id.vendor_id = 0x1af4;
  PciConfigSpace c(id);
  auto off = add_msix_capability(c, 4, 1, 0x0, 1, 0x800);
  REQUIRE(off);
  CHECK(c.find_capability(kCapMsix) == *off);
  CHECK(c.read(uint16_t(*off + 2), 2) == 3);  // table size - 1
  CHECK(c.read(uint16_t(*off + 4), 4) == 1);
  CHECK(c.read(uint16_t(*off + 8), 4) == 0x801);
  c.write(uint16_t(*off + 2), 2, 0xffff);
  CHECK(c.read(uint16_t(*off + 2), 2) == 0xc003);
  CHECK_FALSE(add_msix_capability(c, 0, 1, 0, 1, 0x800));
  CHECK_FALSE(add_msix_capability(c, 4, 6, 0, 1, 0x800));
}
