#include <doctest/doctest.h>

#include "pinless/pci/bar_allocator.h"
#include "pinless/pci/config_space.h"

using namespace pinless;
using namespace pinless::pci;

namespace {
const Range<Gpa> kMmio32{Gpa(0xc0000000), 0x20000000};
const Range<Gpa> kMmio64{Gpa(0x400000000), 0x400000000};
const Range<uint64_t> kIo{0x1000, 0xf000};
}  // namespace

TEST_CASE("bar allocator: natural alignment within each window") {
  PciBarAllocator a(kMmio32, kMmio64, kIo);
  CHECK(a.allocate(BarKind::kMem32, 0x1000) == 0xc0000000);
  CHECK(a.allocate(BarKind::kMem32, 0x100000) == 0xc0100000);
  CHECK(a.allocate(BarKind::kMem32, 0x10) == 0xc0200000);
  CHECK(a.allocate(BarKind::kIo, 0x20) == 0x1000);
  CHECK(a.allocate(BarKind::kIo, 0x100) == 0x1100);
  CHECK(a.allocate(BarKind::kMem64, 1ull << 30) == 0x400000000);
  CHECK(a.allocate(BarKind::kMem64, 0x4000) == 0x440000000);
}

TEST_CASE("bar allocator: 64-bit BARs fall back to the 32-bit window") {
  PciBarAllocator a(kMmio32, Range<Gpa>{}, kIo);
  CHECK(a.allocate(BarKind::kMem64, 0x4000) == 0xc0000000);
  CHECK_FALSE(a.allocate(BarKind::kMem64, 4ull << 30));  // too big for 32-bit space
}

TEST_CASE("bar allocator: full windows and bad sizes fail") {
  PciBarAllocator a(Range<Gpa>{Gpa(0xc0000000), 0x2000}, Range<Gpa>{}, Range<uint64_t>{0xc000, 0x40});
  CHECK(a.allocate(BarKind::kMem32, 0x2000));
  auto r = a.allocate(BarKind::kMem32, 0x1000);
  REQUIRE_FALSE(r);
  CHECK(r.error().err() == ENOSPC);
  CHECK_FALSE(a.allocate(BarKind::kMem32, 0x1800).has_value());
  CHECK(a.allocate(BarKind::kIo, 0x40) == 0xc000);
  CHECK_FALSE(a.allocate(BarKind::kIo, 4));
}

TEST_CASE("bar allocator: assign programs every BAR of a config space, largest first") {
  PciIdentity id;
  id.vendor_id = 0x1af4;
  PciConfigSpace c(id);
  REQUIRE(c.add_bar(0, BarKind::kMem32, 0x1000));
  REQUIRE(c.add_bar(1, BarKind::kMem32, 0x100000));
  REQUIRE(c.add_bar(2, BarKind::kMem64, 0x4000, true));
  REQUIRE(c.add_bar(4, BarKind::kIo, 0x40));
  PciBarAllocator a(kMmio32, kMmio64, kIo);
  REQUIRE(a.assign(c));
  CHECK(c.bar(1)->address == 0xc0000000);
  CHECK(c.bar(0)->address == 0xc0100000);
  CHECK(c.bar(2)->address == 0x400000000);
  CHECK(c.read(kBar0 + 12, 4) == 0x4);  // high dword of BAR 2
  CHECK(c.bar(4)->address == 0x1000);
  CHECK_FALSE(c.decoded(0).has_value());  // decode stays off until the guest enables it
}
