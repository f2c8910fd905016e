#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

#include "pinless/vmm/acpi/sdt.h"
#include "pinless/vmm/acpi/tables.h"
#include "unit/vmm/acpi/acpi_bytes.h"
#include "pinless/vmm/acpi/viot.h"

using namespace pinless;
using namespace pinless::vmm;
using namespace pinless::vmm::acpi;
using namespace pinless::testing;

namespace {

constexpr Gpa kBase = kAcpiTestBase;

uint64_t fnv1a(const std::vector<uint8_t>& b) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t c : b) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// VIOMMU.md section 2: IOMMU at 00:02.0, endpoints 00:00.0-00:1f.7, segment 0.
ViotConfig example() {
  ViotConfig c;
  c.iommu_bdf = pci_bdf(0, 2, 0);
  c.ranges.push_back({.bdf_start = 0x00, .bdf_end = 0xff, .endpoint_start = 0});
  return c;
}

std::vector<uint8_t> built(const ViotConfig& c) {
  auto t = build_viot(c);
  REQUIRE(t.has_value());
  return *t;
}

// The error context of a config validate() must reject (and build_viot with it).
std::string rejection(const ViotConfig& c) {
  Status s = validate(c);
  REQUIRE_FALSE(s.has_value());
  CHECK(s.error().op() == "ACPI VIOT");
  CHECK(s.error().err() == EINVAL);
  auto t = build_viot(c);
  REQUIRE_FALSE(t.has_value());
  CHECK(t.error().context() == s.error().context());
  return s.error().context();
}

bool mentions(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

}  // namespace

TEST_CASE("acpi viot: the VIOMMU.md example byte for byte, OEM fields aside") {
  // clang-format off
  const std::vector<uint8_t> expected = {
      'V', 'I', 'O', 'T', 0x58, 0x00, 0x00, 0x00,        // signature, length 88
      0x00, 0x00,                                          // revision 0, checksum (not compared)
      /* 0x0a..0x23: OEM id, OEM table id, OEM revision, creator id, creator revision */
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      0x02, 0x00, 0x30, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,      // count 2, offset 0x30
      0x03, 0x00, 0x10, 0x00, 0x00, 0x00, 0x10, 0x00,      // IOMMU node: seg 0, bdf 0x10
      0, 0, 0, 0, 0, 0, 0, 0,
      0x01, 0x00, 0x18, 0x00, 0x00, 0x00, 0x00, 0x00,      // range node: endpoint 0
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x00,      // seg 0..0, bdf 0..0xff
      0x30, 0x00, 0, 0, 0, 0, 0, 0,                        // -> IOMMU node at 0x30
  };
  // clang-format on
  auto viot = built(example());
  REQUIRE(viot.size() == 88);
  REQUIRE(expected.size() == 88);
  for (size_t i = 0; i < viot.size(); ++i) {
    if (i == 9 || (i >= 10 && i < kSdtHeaderSize)) continue;
    CAPTURE(i);
    CHECK(viot[i] == expected[i]);
  }
  CHECK(byte_sum(viot) == 0);
  CHECK(viot[8] == 0);  // revision 0
  CHECK(std::string(viot.begin() + 10, viot.begin() + 16) == kOemId);
  CHECK(std::string(viot.begin() + 16, viot.begin() + 24) == kOemTableId);
  CHECK(std::string(viot.begin() + 28, viot.begin() + 32) == kCreatorId);
}

TEST_CASE("acpi viot: endpoint IDs follow Linux's rule, the IOMMU itself has none") {
  ViotConfig c = example();
  CHECK(pci_bdf(0, 3, 0) == 0x18);
  CHECK(viot_endpoint_id(c, 0, pci_bdf(0, 3, 0)) == 0x18u);
  CHECK(viot_endpoint_id(c, 0, pci_bdf(0, 4, 0)) == 0x20u);
  CHECK(viot_endpoint_id(c, 0, pci_bdf(0, 0, 0)) == 0x0u);
  CHECK(viot_endpoint_id(c, 0, pci_bdf(0, 31, 7)) == 0xffu);
  CHECK(viot_endpoint_id(c, 0, pci_bdf(0, 2, 0)) == std::nullopt);  // not translating itself
  CHECK(viot_endpoint_id(c, 0, pci_bdf(0, 2, 1)) == 0x11u);          // its sibling function is
  CHECK(viot_endpoint_id(c, 0, pci_bdf(1, 0, 0)) == std::nullopt);  // bus 1: not covered
  CHECK(viot_endpoint_id(c, 1, pci_bdf(0, 3, 0)) == std::nullopt);  // segment 1: not covered
}

TEST_CASE("acpi viot: for_buses covers whole buses with endpoint ID = BDF") {
  ViotConfig c = ViotConfig::for_buses(pci_bdf(0, 2, 0), 0, 0);
  CHECK(built(c) == built(example()));
  ViotConfig wide = ViotConfig::for_buses(pci_bdf(0, 1, 0), 2, 5);
  REQUIRE(wide.ranges.size() == 1);
  CHECK(wide.ranges[0].bdf_start == 0x200);
  CHECK(wide.ranges[0].bdf_end == 0x5ff);
  CHECK(viot_endpoint_id(wide, 0, pci_bdf(3, 4, 1)) == uint32_t(pci_bdf(3, 4, 1)));
  CHECK(validate(wide).has_value());
}

TEST_CASE("acpi viot: several ranges, one node each, all pointing at the IOMMU node") {
  ViotConfig c;
  c.iommu_segment = 0;
  c.iommu_bdf = pci_bdf(0, 1, 0);
  c.ranges = {
      {.bdf_start = pci_bdf(0, 3, 0), .bdf_end = pci_bdf(0, 3, 7), .endpoint_start = 0x100},
      {.bdf_start = pci_bdf(0, 5, 0), .bdf_end = pci_bdf(0, 5, 0), .endpoint_start = 0x8},
      {.segment_start = 1, .segment_end = 2, .bdf_start = 0x10, .bdf_end = 0x1f,
       .endpoint_start = 0x10000},
  };
  REQUIRE(validate(c).has_value());
  auto viot = built(c);
  CHECK(viot.size() == 48 + 16 + 3 * 24);
  CHECK(le(viot, 4, 4) == viot.size());
  CHECK(byte_sum(viot) == 0);
  CHECK(le(viot, 36, 2) == 4);
  CHECK(le(viot, 38, 2) == 48);
  CHECK(viot[48] == 3);
  CHECK(le(viot, 50, 2) == 16);
  CHECK(le(viot, 54, 2) == pci_bdf(0, 1, 0));
  for (size_t i = 0; i < c.ranges.size(); ++i) {
    CAPTURE(i);
    size_t node = 64 + 24 * i;
    const ViotPciRange& r = c.ranges[i];
    CHECK(viot[node] == 1);
    CHECK(le(viot, node + 2, 2) == 24);
    CHECK(le(viot, node + 4, 4) == r.endpoint_start);
    CHECK(le(viot, node + 8, 2) == r.segment_start);
    CHECK(le(viot, node + 10, 2) == r.segment_end);
    CHECK(le(viot, node + 12, 2) == r.bdf_start);
    CHECK(le(viot, node + 14, 2) == r.bdf_end);
    CHECK(le(viot, node + 16, 2) == 48);
  }
  CHECK(viot_endpoint_id(c, 0, pci_bdf(0, 3, 2)) == 0x102u);
  CHECK(viot_endpoint_id(c, 0, pci_bdf(0, 5, 0)) == 0x8u);
  CHECK(viot_endpoint_id(c, 0, pci_bdf(0, 4, 0)) == std::nullopt);  // the gap between ranges
  CHECK(viot_endpoint_id(c, 1, 0x10) == 0x10000u);
  CHECK(viot_endpoint_id(c, 2, 0x13) == 0x10000u + (1u << 16) + 3);  // (seg - start) << 16
}

TEST_CASE("acpi viot: validate rejects every malformed topology") {
  SUBCASE("no range") { CHECK(mentions(rejection(ViotConfig{}), "no PCI range")); }
  SUBCASE("bdf_end < bdf_start") {
    ViotConfig c = example();
    c.ranges[0] = {.bdf_start = 0x20, .bdf_end = 0x1f};
    CHECK(mentions(rejection(c), "bdf_end < bdf_start"));
  }
  SUBCASE("segment_end < segment_start") {
    ViotConfig c = example();
    c.ranges[0] = {.segment_start = 2, .segment_end = 1, .bdf_end = 0xff};
    CHECK(mentions(rejection(c), "segment_end < segment_start"));
  }
  SUBCASE("two ranges covering one function") {
    ViotConfig c = example();
    c.ranges.push_back({.bdf_start = 0xff, .bdf_end = 0x1ff, .endpoint_start = 0x1000});
    std::string why = rejection(c);
    CHECK(mentions(why, "cover the same functions"));
    CHECK(mentions(why, "range 0"));
    CHECK(mentions(why, "range 1"));
  }
  SUBCASE("overlap only through the segment ranges") {
    ViotConfig c;
    c.ranges = {{.segment_start = 0, .segment_end = 3, .bdf_end = 0xff},
                {.segment_start = 3, .segment_end = 3, .bdf_start = 0x80, .bdf_end = 0x80,
                 .endpoint_start = 0x100000}};
    CHECK(mentions(rejection(c), "cover the same functions"));
  }
  SUBCASE("endpoint IDs past 32 bits") {
    ViotConfig c = example();
    c.ranges[0].endpoint_start = 0xffffff01;  // 0xffffff01 + 0xff = 0x1_0000_0000
    CHECK(mentions(rejection(c), "overflow 32 bits"));
    ViotConfig seg;
    seg.ranges = {
        {.segment_start = 0, .segment_end = 0xffff, .bdf_end = 0xffff, .endpoint_start = 1}};
    CHECK(mentions(rejection(seg), "overflow 32 bits"));
  }
  SUBCASE("two ranges handing out the same endpoint IDs") {
    ViotConfig c = example();
    c.ranges.push_back({.bdf_start = 0x100, .bdf_end = 0x1ff, .endpoint_start = 0x80});
    CHECK(mentions(rejection(c), "share endpoint IDs"));
  }
  SUBCASE("more ranges than node_count can count") {
    ViotConfig c;
    c.ranges.resize(0xffff);
    CHECK(mentions(rejection(c), "node_count"));
  }
}

TEST_CASE("acpi viot: validate accepts the edges") {
  ViotConfig c = example();
  c.ranges[0].endpoint_start = 0xffffff00;  // last ID exactly 0xffffffff
  CHECK(validate(c).has_value());
  ViotConfig adjacent;
  adjacent.ranges = {{.bdf_start = 0x00, .bdf_end = 0x7f, .endpoint_start = 0},
                     {.bdf_start = 0x80, .bdf_end = 0xff, .endpoint_start = 0x80}};
  CHECK(validate(adjacent).has_value());
  ViotConfig whole;  // every function of every segment
  whole.ranges = {{.segment_start = 0, .segment_end = 0xffff, .bdf_end = 0xffff}};
  CHECK(validate(whole).has_value());
  CHECK(viot_endpoint_id(whole, 0xffff, 0xffff) == 0xffffffffu);
}

TEST_CASE("acpi viot: the blob lists the VIOT in the XSDT, where the layout says") {
  AcpiConfig c = AcpiConfig::for_layout(layout::compute_layout(8 * kGiB), 4);
  const auto plain = build_acpi_tables(c, kBase);
  c.viot = example();
  AcpiBlobLayout l{};
  auto blob = build_acpi_tables(c, kBase, &l);
  CHECK(blob.size() == l.size);
  CHECK(blob.size() <= layout::kAcpiTablesMax);
  CHECK(byte_sum(std::span(blob).first(20)) == 0);
  CHECK(byte_sum(std::span(blob).first(36)) == 0);

  auto xsdt = table_at(blob, le(blob, 24, 8));
  CHECK(sig(xsdt, 0) == "XSDT");
  CHECK(byte_sum(xsdt) == 0);
  REQUIRE(xsdt.size() == 36 + 4 * 8);
  std::vector<std::string> sigs;
  for (size_t i = 0; i < 4; ++i) {
    auto t = table_at(blob, le(xsdt, 36 + 8 * i, 8));
    CHECK(byte_sum(t) == 0);
    sigs.push_back(sig(t, 0));
  }
  CHECK(sigs == std::vector<std::string>{"FACP", "APIC", "MCFG", "VIOT"});

  CHECK(l.viot != 0);
  CHECK(l.viot % 16 == 0);
  CHECK(l.viot >= l.mcfg + 60);
  CHECK(le(xsdt, 36 + 3 * 8, 8) == kBase.value() + l.viot);
  CHECK(table_at(blob, kBase.value() + l.viot) == built(example()));
  auto fadt = table_at(blob, le(xsdt, 36, 8));
  CHECK(sig(table_at(blob, le(fadt, 140, 8)), 0) == "DSDT");

  // The other tables are the same bytes as without a VIOT, only further along.
  AcpiBlobLayout pl{};
  (void)build_acpi_tables(AcpiConfig::for_layout(layout::compute_layout(8 * kGiB), 4), kBase,
                          &pl);
  CHECK(table_at(blob, kBase.value() + l.madt) == table_at(plain, kBase.value() + pl.madt));
  CHECK(table_at(blob, kBase.value() + l.mcfg) == table_at(plain, kBase.value() + pl.mcfg));
  CHECK(table_at(blob, kBase.value() + l.dsdt) == table_at(plain, kBase.value() + pl.dsdt));
}

// Sizes and FNV-1a hashes of the blobs built before the VIOT existed: a config without a VIOT
// must still produce exactly these bytes. A deliberate change to another table updates them.
TEST_CASE("acpi viot: without a VIOT the blob is byte for byte what it was") {
  AcpiBlobLayout l{};
  auto a = build_acpi_tables(AcpiConfig{}, kBase, &l);
  CHECK(l.viot == 0);
  CHECK(a.size() == 940);
  CHECK(fnv1a(a) == 0xad22297a5457baedull);
  auto b = build_acpi_tables(AcpiConfig::for_layout(layout::compute_layout(8 * kGiB), 4), kBase);
  CHECK(b.size() == 1020);
  CHECK(fnv1a(b) == 0x2953f0d4f19e7fd3ull);
  CHECK_FALSE(AcpiConfig{}.viot.has_value());
}

// Only when iasl (acpica-tools) is installed.
TEST_CASE("acpi viot: iasl disassembles the VIOT without errors (skipped without iasl)") {
  if (std::system("command -v iasl >/dev/null 2>&1") != 0) {
    MESSAGE("iasl not installed; skipping");
    return;
  }
  char dir[] = "/tmp/pinless-viot-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  std::string path = std::string(dir) + "/viot.dat";
  auto viot = built(example());
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(viot.data()),
                                              std::streamsize(viot.size()));
  std::string cmd = "iasl -d " + path + " > " + path + ".log 2>&1";
  CHECK(std::system(cmd.c_str()) == 0);
  std::ifstream dsl(std::string(dir) + "/viot.dsl");
  std::stringstream text;
  text << dsl.rdbuf();
  CHECK(text.str().find("Incorrect checksum") == std::string::npos);
  // ACPICA learnt the VIOT in 2021; an older iasl (bookworm's is 20200925) dumps it as an
  // unknown table, which still checks the header and checksum but not the layout.
  if (text.str().find("Unknown ACPI table signature") != std::string::npos) {
    MESSAGE("this iasl does not know the VIOT: only its header and checksum were checked");
  } else {
    CHECK(text.str().find("Virtual I/O Translation") != std::string::npos);
  }
  (void)std::system((std::string("rm -rf ") + dir).c_str());
}
