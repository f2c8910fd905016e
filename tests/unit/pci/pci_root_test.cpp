#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "pinless/pci/config_space_device.h"
#include "pinless/pci/pci_root.h"

using namespace pinless::pci;

namespace {

std::shared_ptr<ConfigSpaceDevice> make_dev(uint16_t device_id = 0x1041) {
  PciIdentity id;
  id.vendor_id = 0x1af4;
  id.device_id = device_id;
  id.class_code = 0x020000;
  auto d = std::make_shared<ConfigSpaceDevice>("test", id);
  REQUIRE(d->config().add_bar(0, BarKind::kMem32, 0x1000));
  return d;
}

uint64_t ecam_offset(uint8_t bus, uint8_t dev, uint8_t fn, uint16_t reg) {
  return uint64_t(bus) << 20 | uint64_t(dev) << 15 | uint64_t(fn) << 12 | reg;
}

uint32_t rd(IoDevice& d, uint64_t off, size_t size) {
  uint8_t b[8] = {};
  d.read(off, std::span(b, size));
  uint32_t v = 0;
  for (size_t i = 0; i < size && i < 4; ++i) v |= uint32_t(b[i]) << (8 * i);
  return v;
}

void wr(IoDevice& d, uint64_t off, size_t size, uint32_t v) {
  uint8_t b[8] = {};
  for (size_t i = 0; i < size && i < 4; ++i) b[i] = uint8_t(v >> (8 * i));
  d.write(off, std::span<const uint8_t>(b, size));
}

}  // namespace

TEST_CASE("pci root: host bridge at 00:00.0 through ECAM") {
  PciRoot root;
  CHECK(rd(root.ecam(), ecam_offset(0, 0, 0, kVendorId), 4) == 0x00081b36);
  CHECK((rd(root.ecam(), ecam_offset(0, 0, 0, kRevisionId), 4) >> 8) == 0x060000);
  CHECK(rd(root.ecam(), ecam_offset(0, 0, 0, kHeaderType), 1) == 0);
}

TEST_CASE("pci root: absent functions, buses and slots read all-ones") {
  PciRoot root;
  CHECK(rd(root.ecam(), ecam_offset(0, 1, 0, 0), 4) == 0xffffffff);
  CHECK(rd(root.ecam(), ecam_offset(0, 0, 1, 0), 4) == 0xffffffff);
  CHECK(rd(root.ecam(), ecam_offset(1, 0, 0, 0), 2) == 0xffff);
  CHECK(rd(root.ecam(), ecam_offset(255, 31, 7, 0xffc), 4) == 0xffffffff);
  wr(root.ecam(), ecam_offset(0, 5, 0, kCommand), 2, 0xffff);  // ignored
}

TEST_CASE("pci root: devices get slots 1.. and answer through ECAM and CF8/CFC") {
  PciRoot root;
  auto dev = make_dev();
  auto devfn = root.add_device(dev);
  REQUIRE(devfn);
  CHECK(*devfn == make_devfn(1, 0));
  CHECK(root.device(*devfn) == dev);
  CHECK(rd(root.ecam(), ecam_offset(0, 1, 0, kVendorId), 4) == 0x10411af4);
  CHECK(rd(root.ecam(), ecam_offset(0, 1, 0, kDeviceId), 2) == 0x1041);

  IoDevice& io = root.config_io();
  wr(io, 0, 4, 0x80000800);  // enable, bus 0, device 1, function 0, register 0
  CHECK(rd(io, 0, 4) == 0x80000800);
  CHECK(rd(io, 4, 4) == 0x10411af4);
  CHECK(rd(io, 6, 2) == 0x1041);
  CHECK(rd(io, 7, 1) == 0x10);
  wr(io, 0, 4, 0x80000804);  // command/status dword
  wr(io, 4, 2, kCommandMemory);
  CHECK(rd(root.ecam(), ecam_offset(0, 1, 0, kCommand), 2) == kCommandMemory);
  wr(io, 0, 4, 0x00000800);  // enable bit clear
  CHECK(rd(io, 4, 4) == 0xffffffff);
}

TEST_CASE("pci root: BAR sizing and moves through both config mechanisms") {
  PciRoot root;
  auto dev = make_dev();
  std::vector<BarMove> moves;
  dev->set_bar_move_handler([&](const BarMove& m) { moves.push_back(m); });
  REQUIRE(root.add_device(dev));
  uint64_t bar0 = ecam_offset(0, 1, 0, kBar0);
  wr(root.ecam(), bar0, 4, 0xffffffff);
  CHECK(rd(root.ecam(), bar0, 4) == 0xfffff000);
  wr(root.ecam(), bar0, 4, 0xc0000000);
  wr(root.ecam(), ecam_offset(0, 1, 0, kCommand), 2, kCommandMemory);
  REQUIRE(moves.size() == 1);
  CHECK(moves[0].to == 0xc0000000);
  wr(root.config_io(), 0, 4, 0x80000810);
  wr(root.config_io(), 4, 4, 0xc0100000);
  REQUIRE(moves.size() == 2);
  CHECK(moves[1].from == 0xc0000000);
  CHECK(moves[1].to == 0xc0100000);
}

TEST_CASE("pci root: malformed guest accesses are ignored") {
  PciRoot root;
  REQUIRE(root.add_device(make_dev()));
  CHECK(rd(root.ecam(), ecam_offset(0, 1, 0, 1), 2) == 0xffff);  // misaligned
  CHECK(rd(root.ecam(), ecam_offset(0, 1, 0, 2), 4) == 0xffffffff);
  uint8_t eight[8];
  root.ecam().read(ecam_offset(0, 1, 0, 0), std::span(eight, 8));
  for (uint8_t b : eight) CHECK(b == 0xff);
  root.ecam().read(ecam_offset(0, 1, 0, 0), std::span(eight, 3));
  CHECK(eight[0] == 0xff);
  wr(root.ecam(), ecam_offset(0, 1, 0, kCommand + 1), 2, 0xffff);
  CHECK(rd(root.ecam(), ecam_offset(0, 1, 0, kCommand), 2) == 0);
  // CF8/CFC: byte access to 0xcf8..0xcfb does not touch CONFIG_ADDRESS; CFC accesses
  // that cross the dword are ignored.
  wr(root.config_io(), 0, 4, 0x80000800);
  wr(root.config_io(), 1, 1, 0x06);
  CHECK(rd(root.config_io(), 0, 4) == 0x80000800);
  CHECK(rd(root.config_io(), 1, 1) == 0xff);
  CHECK(rd(root.config_io(), 6, 4) == 0xffffffff);
  CHECK(rd(root.config_io(), 5, 2) == 0xffff);
  wr(root.config_io(), 7, 2, 0xffff);
}

TEST_CASE("pci root: 31 slots, then ENOSPC; chosen slots must be free") {
  PciRoot root;
  CHECK_FALSE(root.add_device(nullptr));
  REQUIRE(root.add_device_at(7, make_dev()));
  auto busy = root.add_device_at(7, make_dev());
  REQUIRE_FALSE(busy);
  CHECK(busy.error().err() == EBUSY);
  CHECK_FALSE(root.add_device_at(0, make_dev()));
  CHECK_FALSE(root.add_device_at(32, make_dev()));
  for (int i = 0; i < 30; ++i) REQUIRE(root.add_device(make_dev()));
  auto full = root.add_device(make_dev());
  REQUIRE_FALSE(full);
  CHECK(full.error().err() == ENOSPC);
}

TEST_CASE("pci root: a removed device is off the bus and its slot is free again") {
  PciRoot root;
  auto dev = make_dev(0x1057);
  REQUIRE(root.add_device_at(1, dev));
  CHECK(rd(root.ecam(), ecam_offset(0, 1, 0, 0), 4) == 0x10571af4u);
  CHECK_FALSE(root.remove_device(0x00));  // the host bridge stays
  CHECK_FALSE(root.remove_device(0x09));  // function 1: nothing there
  CHECK(root.remove_device(0x08) == dev);
  CHECK(rd(root.ecam(), ecam_offset(0, 1, 0, 0), 4) == 0xffffffffu);
  CHECK_FALSE(root.remove_device(0x08));
  CHECK(root.add_device_at(1, make_dev()));
  CHECK(rd(root.ecam(), ecam_offset(0, 0, 0, 0), 2) == PciRoot::kHostBridgeVendor);
}
