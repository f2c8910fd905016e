#include <doctest/doctest.h>

#include <array>

#include "pinless/vfio/pci_caps.h"

using namespace pinless::vfio;

namespace {
std::array<uint8_t, 256> with_caps() {
  std::array<uint8_t, 256> c{};
  c[0x06] = 0x10;  // capability list
  c[0x34] = 0x40;
  c[0x40] = 0x01; c[0x41] = 0x50;                  // PM
  c[0x50] = 0x05; c[0x51] = 0x70; c[0x52] = 0x86;  // MSI: 64-bit, MMC = 3 (8 vectors)
  c[0x70] = 0x11; c[0x71] = 0x80; c[0x72] = 0x0f;  // MSI-X: 16 vectors
  c[0x74] = 0x02; c[0x75] = 0x20;                  // table in BAR 2 at 0x2000
  c[0x78] = 0x02; c[0x79] = 0x30;                  // PBA in BAR 2 at 0x3000
  c[0x80] = 0x09; c[0x81] = 0x00; c[0x82] = 0x08;  // vendor-specific, 8 bytes
  return c;
}
}  // namespace

TEST_CASE("caps: the real list is walked in order with lengths") {
  auto c = with_caps();
  auto caps = walk_capabilities(c);
  REQUIRE(caps.size() == 4);
  CHECK(caps[0].id == 0x01);
  CHECK(caps[1].id == 0x05);
  CHECK(caps[1].length == 14);
  CHECK(caps[2].id == 0x11);
  CHECK(caps[3].length == 8);
  auto msi = decode_msi(c, 0x50);
  CHECK(msi.is64);
  CHECK(msi.max_vectors_log2 == 3);
  CHECK(msi.data_offset() == 0x0c);
  auto msix = decode_msix(c, 0x70);
  CHECK(msix.vectors == 16);
  CHECK(msix.table_bar == 2);
  CHECK(msix.table_offset == 0x2000);
  CHECK(msix.pba_offset == 0x3000);
  CHECK(msix.pba_bytes() == 8);
}

TEST_CASE("caps: loops, bad pointers and a missing list bit end the walk") {
  auto c = with_caps();
  c[0x81] = 0x40;  // vendor cap points back at PM
  CHECK(walk_capabilities(c).size() == 4);
  c = with_caps();
  c[0x41] = 0x20;  // into the header
  CHECK(walk_capabilities(c).size() == 1);
  c = with_caps();
  c[0x06] = 0;
  CHECK(walk_capabilities(c).empty());
  std::array<uint8_t, 64> short_space{};
  CHECK(walk_capabilities(short_space).empty());
}

TEST_CASE("caps: BAR type bits") {
  std::array<uint8_t, 256> c{};
  c[0x10] = 0x0c;  // 64-bit prefetchable
  c[0x18] = 0x01;  // I/O
  CHECK(decode_bar(c, 0).type == BarType::kMem64);
  CHECK(decode_bar(c, 0).prefetchable);
  CHECK(decode_bar(c, 2).type == BarType::kIo);
  CHECK(decode_bar(c, 3).type == BarType::kMem32);
  CHECK(decode_bar(c, 6).type == BarType::kNone);
}
