// The capability walker against the config spaces a broken or malicious device (or guest)
// can present: loops, pointers outside the list's area, truncated copies, absent devices.
#include <doctest/doctest.h>

#include <array>
#include <utility>
#include <vector>

#include "pinless/pci/capabilities.h"
#include "pinless/pci/pci_device.h"

using namespace pinless::pci;

namespace {

using Space = std::array<uint8_t, kConfigSpaceSize>;

// Standard list: PM at 0x40 -> MSI at 0x50 -> MSI-X at 0x70 -> end.
Space standard() {
  Space c{};
  c[kStatus] = uint8_t(kStatusCapList);
  c[kCapabilitiesPointer] = 0x40;
  c[0x40] = kCapPm, c[0x41] = 0x50;
  c[0x50] = kCapMsi, c[0x51] = 0x70;
  c[0x70] = kCapMsix, c[0x71] = 0x00;
  return c;
}

void put32(Space& c, uint16_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) c[off + i] = uint8_t(v >> (8 * i));
}
uint32_t ext(uint16_t id, uint16_t next) { return uint32_t(id) | 1u << 16 | uint32_t(next) << 20; }

// Extended list: AER at 0x100 -> ATS at 0x140 -> PRI at 0x180 -> end.
Space extended() {
  Space c{};
  put32(c, 0x100, ext(kExtCapAer, 0x140));
  put32(c, 0x140, ext(kExtCapAts, 0x180));
  put32(c, 0x180, ext(kExtCapPri, 0));
  return c;
}

std::vector<uint16_t> offsets(const std::vector<CapEntry>& caps) {
  std::vector<uint16_t> out;
  for (const auto& c : caps) out.push_back(c.offset);
  return out;
}
// (id, offset) of each entry, in list order.
using Listing = std::vector<std::pair<uint16_t, uint16_t>>;
Listing listing(const std::vector<CapEntry>& caps) {
  Listing out;
  for (const auto& c : caps) out.emplace_back(c.id, c.offset);
  return out;
}

}  // namespace

TEST_CASE("capabilities: a well-formed standard list is walked in list order") {
  Space c = standard();
  CHECK(listing(walk_capabilities(read32_from(c))) == Listing{{kCapPm, 0x40}, {kCapMsi, 0x50}, {kCapMsix, 0x70}});
  CHECK(find_capability(read32_from(c), kCapMsix) == 0x70);
  CHECK_FALSE(find_capability(read32_from(c), kCapPcie).has_value());
  c[kStatus] = 0;  // no capability-list bit: the pointer means nothing
  CHECK(walk_capabilities(read32_from(c)).empty());
}

TEST_CASE("capabilities: standard-list loops end the walk") {
  Space c = standard();
  c[0x71] = 0x40;  // MSI-X points back at PM
  CHECK(offsets(walk_capabilities(read32_from(c))) == std::vector<uint16_t>{0x40, 0x50, 0x70});
  c = standard();
  c[0x41] = 0x40;  // PM points at itself
  CHECK(offsets(walk_capabilities(read32_from(c))) == std::vector<uint16_t>{0x40});
  c = standard();
  c[0x41] = 0x43;  // low bits are reserved: 0x43 is 0x40 again, still a loop
  CHECK(walk_capabilities(read32_from(c)).size() == 1);
  // A list through every dword of the area: 48 entries, then the loop back is caught.
  Space full{};
  full[kStatus] = uint8_t(kStatusCapList);
  full[kCapabilitiesPointer] = 0x40;
  for (uint16_t off = 0x40; off < 0x100; off += 4) {
    full[off] = kCapVendor;
    full[off + 1] = uint8_t(off + 4 < 0x100 ? off + 4 : 0x40);
  }
  CHECK(walk_capabilities(read32_from(full)).size() == 48);
}

TEST_CASE("capabilities: standard pointers outside 0x40..0xff end the walk") {
  Space c = standard();
  c[kCapabilitiesPointer] = 0x10;  // into the header (BAR 0)
  CHECK(walk_capabilities(read32_from(c)).empty());
  c = standard();
  c[0x51] = 0x20;  // MSI points into the header
  CHECK(walk_capabilities(read32_from(c)).size() == 2);
  c = standard();
  c[kCapabilitiesPointer] = 0x3c;  // just below the area
  CHECK(walk_capabilities(read32_from(c)).empty());
}

TEST_CASE("capabilities: a truncated copy or an absent device is not read past") {
  Space c = standard();
  // 0x60 bytes: PM and MSI headers are inside, the MSI-X header at 0x70 is not.
  CHECK(walk_capabilities(read32_from(std::span(c).first(0x60))).size() == 2);
  CHECK(walk_capabilities(read32_from(std::span(c).first(0x40))).empty());
  CHECK(walk_capabilities(read32_from(std::span(c).first(2))).empty());
  CHECK(walk_capabilities(read32_from({})).empty());
  auto gone = [](uint16_t) { return 0xffffffffu; };  // surprise-removed: everything reads ~0
  CHECK(walk_capabilities(gone).empty());
  CHECK(walk_ext_capabilities(gone).empty());
  // A reader never sees a partial dword.
  std::array<uint8_t, 6> odd{1, 2, 3, 4, 5, 6};
  CHECK(read32_from(odd)(0) == 0x04030201u);
  CHECK(read32_from(odd)(4) == 0xffffffffu);
}

TEST_CASE("capabilities: a well-formed extended list, in any address order") {
  Space c = extended();
  CHECK(listing(walk_ext_capabilities(read32_from(c))) ==
        Listing{{kExtCapAer, 0x100}, {kExtCapAts, 0x140}, {kExtCapPri, 0x180}});
  CHECK(find_ext_capability(read32_from(c), kExtCapAts) == 0x140);
  // The spec does not ask for ascending offsets: a pointer backwards is followed.
  put32(c, 0x180, ext(kExtCapPri, 0x120));
  put32(c, 0x120, ext(0x0019, 0));  // secondary PCIe
  CHECK(offsets(walk_ext_capabilities(read32_from(c))) == std::vector<uint16_t>{0x100, 0x140, 0x180, 0x120});
}

TEST_CASE("capabilities: extended-list loops, bad pointers and junk end the walk") {
  Space c = extended();
  put32(c, 0x180, ext(kExtCapPri, 0x100));  // back to the start
  CHECK(walk_ext_capabilities(read32_from(c)).size() == 3);
  c = extended();
  put32(c, 0x140, ext(kExtCapAts, 0x140));  // itself
  CHECK(offsets(walk_ext_capabilities(read32_from(c))) == std::vector<uint16_t>{0x100, 0x140});
  c = extended();
  put32(c, 0x140, ext(kExtCapAts, 0x0fc));  // into the standard area
  CHECK(walk_ext_capabilities(read32_from(c)).size() == 2);
  CHECK_FALSE(find_ext_capability(read32_from(c), kExtCapPri).has_value());
  c = extended();
  put32(c, 0x140, ext(kExtCapAts, 0x182));  // reserved low bits: 0x180
  CHECK(walk_ext_capabilities(read32_from(c)).size() == 3);
  c = extended();
  put32(c, 0x140, 0);  // a zero header ends the list
  CHECK(walk_ext_capabilities(read32_from(c)).size() == 1);
  Space conventional{};  // 0x100 reads 0: no extended capabilities
  CHECK(walk_ext_capabilities(read32_from(conventional)).empty());
  // A chain through every dword of 0x100..0xfff: 960 entries, then the loop is caught.
  Space full{};
  for (uint16_t off = 0x100; off < 0x1000; off += 4) put32(full, off, ext(0x000b, off + 4 < 0x1000 ? off + 4 : 0x100));
  CHECK(walk_ext_capabilities(read32_from(full)).size() == 960);
}

TEST_CASE("capabilities: a truncated extended space ends the walk where the copy ends") {
  Space c = extended();
  CHECK(walk_ext_capabilities(read32_from(std::span(c).first(256))).empty());   // conventional size
  CHECK(walk_ext_capabilities(read32_from(std::span(c).first(0x150))).size() == 2);
  CHECK(walk_ext_capabilities(read32_from(std::span(c).first(0x182))).size() == 2);  // PRI cut in half
}
