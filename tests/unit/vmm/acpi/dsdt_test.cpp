// The DSDT's power button: the Generic Event Device and the PNP0C0C button it notifies, byte
// for byte (the ASL equivalent is in each test's comment; iasl compiles it to the same AML).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "pinless/vmm/acpi/aml.h"
#include "pinless/vmm/acpi/dsdt.h"
#include "pinless/vmm/acpi/tables.h"

using namespace pinless;
using namespace pinless::vmm;
using namespace pinless::vmm::acpi;
using aml::Bytes;

namespace {

bool contains(const std::vector<uint8_t>& hay, const Bytes& needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

// Device(GED0) {
//   Name(_HID, "ACPI0013")
//   Name(_UID, 0)
//   Name(_CRS, ResourceTemplate() { Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) {gsi} })
//   Method(_EVT, 1, NotSerialized) { Notify(\_SB.PWRB, 0x80) }
// }
Bytes expected_ged(uint8_t gsi) {
  return Bytes{0x5b, 0x82, 0x43, 0x04, 'G', 'E', 'D', '0',  // DeviceOp, PkgLength 67
               0x08, '_', 'H', 'I', 'D', 0x0d, 'A', 'C', 'P', 'I', '0', '0', '1', '3', 0x00,
               0x08, '_', 'U', 'I', 'D', 0x00,
               0x08, '_', 'C', 'R', 'S', 0x11, 0x0e, 0x0a, 0x0b,  // Buffer(11)
               0x89, 0x06, 0x00, 0x03, 0x01, gsi, 0x00, 0x00, 0x00,
               0x79, 0x00,
               0x14, 0x13, '_', 'E', 'V', 'T', 0x01,  // MethodOp, PkgLength 19, 1 arg
               0x86, '\\', 0x2e, '_', 'S', 'B', '_', 'P', 'W', 'R', 'B', 0x0a, 0x80};
}

// Device(PWRB) { Name(_HID, EisaId("PNP0C0C")) Name(_UID, 0) }
const Bytes kPowerButton = {0x5b, 0x82, 0x15, 'P', 'W', 'R', 'B',
                            0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0c, 0x0c,
                            0x08, '_', 'U', 'I', 'D', 0x00};

}  // namespace

TEST_CASE("dsdt: GED0 signals the power button on layout::kGedIrq") {
  static_assert(layout::kGedIrq == 5, "update expected_ged's comment and docs/guest-abi.md");
  AcpiConfig c = AcpiConfig::for_layout(layout::compute_layout(1 * kGiB), 1);
  REQUIRE(c.ged_irq == layout::kGedIrq);
  auto dsdt = build_dsdt(c);
  CHECK(contains(dsdt, expected_ged(uint8_t(layout::kGedIrq))));
  CHECK(contains(dsdt, kPowerButton));
}

TEST_CASE("dsdt: GED0 and PWRB sit inside Scope(\\_SB)") {
  AcpiConfig c = AcpiConfig::for_layout(layout::compute_layout(1 * kGiB), 1);
  auto dsdt = build_dsdt(c);
  // The body starts after the 36-byte table header with Scope(\_SB) { ... }.
  constexpr size_t kBody = 36;
  REQUIRE(dsdt.size() > kBody + 4);
  REQUIRE(dsdt[kBody] == 0x10);  // ScopeOp
  size_t lead = dsdt[kBody + 1], follow = lead >> 6, pkg_len = lead & 0x3f;
  if (follow != 0) {
    pkg_len = lead & 0x0f;
    for (size_t i = 0; i < follow; ++i) pkg_len |= size_t(dsdt[kBody + 2 + i]) << (4 + 8 * i);
  }
  size_t scope_end = kBody + 1 + pkg_len;  // PkgLength counts itself and what follows it
  REQUIRE(scope_end <= dsdt.size());
  REQUIRE(dsdt[kBody + 1 + 1 + follow] == '\\');
  auto find = [&](const Bytes& needle) {
    return size_t(std::search(dsdt.begin(), dsdt.end(), needle.begin(), needle.end()) - dsdt.begin());
  };
  size_t ged = find(expected_ged(uint8_t(c.ged_irq)));
  size_t pwrb = find(kPowerButton);
  CHECK(ged > kBody);
  CHECK(pwrb == ged + expected_ged(uint8_t(c.ged_irq)).size());
  CHECK(pwrb + kPowerButton.size() <= scope_end);
}

TEST_CASE("dsdt: the GED's interrupt follows AcpiConfig::ged_irq") {
  AcpiConfig c;
  c.ged_irq = 7;
  auto dsdt = build_dsdt(c);
  CHECK(contains(dsdt, expected_ged(7)));
  CHECK_FALSE(contains(dsdt, expected_ged(uint8_t(layout::kGedIrq))));
}
