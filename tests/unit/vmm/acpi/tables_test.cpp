#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

#include "pinless/vmm/acpi/dsdt.h"
#include "pinless/vmm/acpi/sdt.h"
#include "pinless/vmm/acpi/tables.h"
#include "unit/vmm/acpi/acpi_bytes.h"

using namespace pinless;
using namespace pinless::vmm;
using namespace pinless::vmm::acpi;
using namespace pinless::testing;

namespace {

constexpr Gpa kBase = kAcpiTestBase;

bool contains(const std::vector<uint8_t>& hay, const std::string& needle) {
  std::vector<uint8_t> n(needle.begin(), needle.end());
  return std::search(hay.begin(), hay.end(), n.begin(), n.end()) != hay.end();
}

int count_madt(const std::vector<uint8_t>& madt, uint8_t type) {
  int n = 0;
  for (size_t off = 44; off + 2 <= madt.size(); off += madt[off + 1]) {
    REQUIRE(madt[off + 1] >= 2);
    n += madt[off] == type;
  }
  return n;
}

}  // namespace

TEST_CASE("acpi: RSDP first, both checksums valid, points at the XSDT") {
  AcpiBlobLayout l{};
  auto blob = build_acpi_tables(AcpiConfig{}, kBase, &l);
  CHECK(blob.size() <= layout::kAcpiTablesMax);
  CHECK(std::string(blob.begin(), blob.begin() + 8) == "RSD PTR ");
  CHECK(byte_sum(std::span(blob).first(20)) == 0);
  CHECK(byte_sum(std::span(blob).first(36)) == 0);
  CHECK(blob[15] == 2);
  CHECK(le(blob, 20, 4) == 36);
  CHECK(le(blob, 24, 8) == kBase.value() + l.xsdt);
  CHECK(l.xsdt % 16 == 0);
}

TEST_CASE("acpi: every table has a valid checksum and length, and the pointers line up") {
  AcpiConfig c = AcpiConfig::for_layout(layout::compute_layout(8 * kGiB), 4);
  auto blob = build_acpi_tables(c, kBase);
  auto xsdt = table_at(blob, le(blob, 24, 8));
  CHECK(sig(xsdt, 0) == "XSDT");
  CHECK(byte_sum(xsdt) == 0);
  REQUIRE(xsdt.size() == 36 + 3 * 8);
  std::vector<std::string> sigs;
  for (size_t i = 0; i < 3; ++i) {
    auto t = table_at(blob, le(xsdt, 36 + 8 * i, 8));
    CHECK(byte_sum(t) == 0);
    sigs.push_back(sig(t, 0));
  }
  CHECK(sigs == std::vector<std::string>{"FACP", "APIC", "MCFG"});

  auto fadt = table_at(blob, le(xsdt, 36, 8));
  CHECK(fadt.size() == 276);
  CHECK(fadt[8] == 6);  // revision
  uint64_t dsdt_addr = le(fadt, 140, 8);
  CHECK(le(fadt, 40, 4) == dsdt_addr);
  auto dsdt = table_at(blob, dsdt_addr);
  CHECK(sig(dsdt, 0) == "DSDT");
  CHECK(byte_sum(dsdt) == 0);
}

TEST_CASE("acpi: FADT is hardware-reduced with the sleep and reset registers") {
  AcpiConfig c;
  auto fadt = build_fadt(c, Gpa(0xe1000));
  CHECK(byte_sum(fadt) == 0);
  uint32_t flags = uint32_t(le(fadt, 112, 4));
  CHECK((flags & (1u << 20)) != 0);  // HW_REDUCED_ACPI
  CHECK((flags & (1u << 10)) != 0);  // RESET_REG_SUP
  uint16_t arch = uint16_t(le(fadt, 109, 2));
  CHECK((arch & 0x02) != 0);  // 8042 present
  CHECK((arch & 0x04) != 0);  // no VGA
  CHECK((arch & 0x08) == 0);  // MSI supported
  CHECK((arch & 0x10) != 0);  // no ASPM
  // RESET_REG, SLEEP_CONTROL_REG, SLEEP_STATUS_REG: SystemIO, 8 bits, byte access.
  for (auto [off, port] : {std::pair{116, 0x3c2}, std::pair{244, 0x3c0}, std::pair{256, 0x3c1}}) {
    CAPTURE(off);
    CHECK(fadt[size_t(off)] == 1);
    CHECK(fadt[size_t(off) + 1] == 8);
    CHECK(fadt[size_t(off) + 3] == 1);
    CHECK(le(fadt, size_t(off) + 4, 8) == uint64_t(port));
  }
  CHECK(fadt[128] == 0x01);
  CHECK(le(fadt, 140, 8) == 0xe1000);
}

TEST_CASE("acpi: MADT has one enabled Local APIC per vCPU, the IOAPIC and the overrides") {
  AcpiConfig c;
  c.cpus = 4;
  auto madt = build_madt(c);
  CHECK(byte_sum(madt) == 0);
  CHECK(le(madt, 36, 4) == 0xfee00000);
  CHECK(count_madt(madt, 0) == 4);
  CHECK(count_madt(madt, 1) == 1);
  CHECK(count_madt(madt, 2) == 2);
  // First LAPIC: processor 0, APIC id 0, enabled.
  CHECK(madt[44] == 0);
  CHECK(madt[45] == 8);
  CHECK(le(madt, 48, 4) == 1);
  // The IOAPIC follows the 4 LAPICs.
  size_t io = 44 + 4 * 8;
  CHECK(madt[io] == 1);
  CHECK(le(madt, io + 4, 4) == 0xfec00000);
  CHECK(le(madt, io + 8, 4) == 0);
  // IRQ0 -> GSI 2, IRQ 9 level-triggered active-high.
  size_t iso = io + 12;
  CHECK(madt[iso + 3] == 0);
  CHECK(le(madt, iso + 4, 4) == 2);
  CHECK(madt[iso + 10 + 3] == 9);
  CHECK(le(madt, iso + 10 + 8, 2) == 0x0d);
}

TEST_CASE("acpi: MADT switches to x2APIC entries above APIC id 254") {
  AcpiConfig c;
  c.cpus = 300;
  auto madt = build_madt(c);
  CHECK(byte_sum(madt) == 0);
  CHECK(count_madt(madt, 0) == 255);
  CHECK(count_madt(madt, 9) == 45);
}

TEST_CASE("acpi: MCFG describes the ECAM for the bus range") {
  AcpiConfig c;
  auto mcfg = build_mcfg(c);
  CHECK(mcfg.size() == 60);
  CHECK(byte_sum(mcfg) == 0);
  CHECK(le(mcfg, 44, 8) == 0xe0000000);
  CHECK(le(mcfg, 52, 2) == 0);
  CHECK(mcfg[54] == 0);
  CHECK(mcfg[55] == 255);
}

TEST_CASE("acpi: DSDT holds PCI0, the ECAM reservation, COM1 and _S5_") {
  AcpiConfig c = AcpiConfig::for_layout(layout::compute_layout(1 * kGiB), 1);
  auto dsdt = build_dsdt(c);
  CHECK(byte_sum(dsdt) == 0);
  CHECK(dsdt[8] == 2);
  for (const char* name : {"PCI0", "MRES", "COM1", "_S5_", "_CRS", "_SEG", "_BBN"}) {
    CAPTURE(name);
    CHECK(contains(dsdt, name));
  }
  CHECK(contains(dsdt, std::string("\x41\xd0\x0a\x08", 4)));  // PNP0A08
  CHECK(contains(dsdt, std::string("\x41\xd0\x0c\x02", 4)));  // PNP0C02
  CHECK(contains(dsdt, std::string("\x8a\x2b\x00", 3)));      // QWordMemory: 64-bit window
  AcpiConfig no_serial;
  no_serial.serial_port = 0;
  CHECK_FALSE(contains(build_dsdt(no_serial), "COM1"));
}

// Only when iasl (acpica-tools) is installed: the disassembler must accept every table.
TEST_CASE("acpi: iasl disassembles the tables without errors (skipped without iasl)") {
  if (std::system("command -v iasl >/dev/null 2>&1") != 0) {
    MESSAGE("iasl not installed; skipping");
    return;
  }
  char dir[] = "/tmp/pinless-acpi-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  AcpiConfig c = AcpiConfig::for_layout(layout::compute_layout(8 * kGiB), 2);
  std::vector<std::pair<std::string, std::vector<uint8_t>>> tables = {
      {"dsdt", build_dsdt(c)}, {"facp", build_fadt(c, Gpa(0xe1000))},
      {"apic", build_madt(c)}, {"mcfg", build_mcfg(c)}};
  for (auto& [name, bytes] : tables) {
    CAPTURE(name);
    std::string path = std::string(dir) + "/" + name + ".dat";
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                std::streamsize(bytes.size()));
    std::string cmd = "iasl -d " + path + " > " + path + ".log 2>&1";
    CHECK(std::system(cmd.c_str()) == 0);
    std::ifstream dsl(std::string(dir) + "/" + name + ".dsl");
    std::stringstream text;
    text << dsl.rdbuf();
    CHECK(text.str().find("Incorrect checksum") == std::string::npos);
    if (name == "dsdt") {
      CHECK(text.str().find("PNP0A08") != std::string::npos);
      CHECK(text.str().find("_S5_") != std::string::npos);
      CHECK(text.str().find("QWordMemory") != std::string::npos);
      CHECK(text.str().find("Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive") !=
            std::string::npos);
      CHECK(text.str().find("Notify (\\_SB.PWRB, 0x80)") != std::string::npos);
      CHECK(text.str().find("PNP0C0C") != std::string::npos);
    }
  }
  (void)std::system((std::string("rm -rf ") + dir).c_str());
}
