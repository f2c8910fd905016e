// i8042, debug port and ACPI PM registers, driven through their IoDevice interface the way
// Linux and the test image drive them.
#include <doctest/doctest.h>

#include <vector>

#include "pinless/vmm/devices/acpi_pm.h"
#include "pinless/vmm/devices/debug_port.h"
#include "pinless/vmm/devices/i8042.h"

using namespace pinless::vmm::devices;

namespace {

uint8_t in(pinless::pci::IoDevice& d, uint64_t off) {
  uint8_t v = 0;
  d.read(off, std::span(&v, 1));
  return v;
}
void out(pinless::pci::IoDevice& d, uint64_t off, uint8_t v) { d.write(off, std::span(&v, 1)); }

// What Linux's i8042_command does: write the command, optional parameter, read the answer.
uint8_t command(I8042& kbc, uint8_t cmd) {
  out(kbc, I8042::kCommandPort, cmd);
  REQUIRE((in(kbc, I8042::kCommandPort) & 0x01) != 0);  // OBF
  return in(kbc, I8042::kDataPort);
}

}  // namespace

TEST_CASE("i8042: command 0xfe on port 0x64 resets the machine") {
  int resets = 0;
  I8042 kbc([&] { ++resets; });
  out(kbc, I8042::kCommandPort, 0xfe);
  CHECK(resets == 1);
  out(kbc, I8042::kCommandPort, 0xff);  // pulses no line
  CHECK(resets == 1);
}

TEST_CASE("i8042: Linux's probe sequence gets answers") {
  I8042 kbc([] {});
  CHECK((in(kbc, I8042::kCommandPort) & 0x03) == 0);  // nothing to read, ready for input
  CHECK(command(kbc, 0xaa) == 0x55);                   // self-test
  uint8_t ctr = command(kbc, 0x20);
  out(kbc, I8042::kCommandPort, 0x60);
  out(kbc, I8042::kDataPort, uint8_t(ctr | 0x10));
  CHECK(command(kbc, 0x20) == (ctr | 0x10));
  out(kbc, I8042::kCommandPort, 0xae);  // enable keyboard clears KBDDIS
  CHECK((command(kbc, 0x20) & 0x10) == 0);
  out(kbc, I8042::kCommandPort, 0xa7);
  CHECK((command(kbc, 0x20) & 0x20) != 0);
  out(kbc, I8042::kCommandPort, 0xa8);
  CHECK((command(kbc, 0x20) & 0x20) == 0);
  CHECK(command(kbc, 0xab) == 0x00);
  CHECK((in(kbc, I8042::kCommandPort) & 0x04) != 0);  // system flag after self-test
}

TEST_CASE("i8042: the AUX loopback fails at once, so Linux skips the mouse") {
  I8042 kbc([] {});
  out(kbc, I8042::kCommandPort, 0xd3);
  out(kbc, I8042::kDataPort, 0x5a);
  uint8_t status = in(kbc, I8042::kCommandPort);
  CHECK((status & 0x01) != 0);
  CHECK((status & 0x20) == 0);  // not flagged as AUX data
  CHECK(command(kbc, 0xa9) != 0);  // AUX interface test reports a fault
  CHECK((in(kbc, I8042::kCommandPort) & 0x01) == 0);  // the stale byte was replaced
}

TEST_CASE("i8042: output port write with bit 0 clear resets") {
  int resets = 0;
  I8042 kbc([&] { ++resets; });
  out(kbc, I8042::kCommandPort, 0xd1);
  out(kbc, I8042::kDataPort, 0x03);
  CHECK(resets == 0);
  out(kbc, I8042::kCommandPort, 0xd1);
  out(kbc, I8042::kDataPort, 0x02);
  CHECK(resets == 1);
}

TEST_CASE("i8042: the keyboard answers its probe through IRQ 1") {
  std::vector<bool> irq;
  I8042 kbc([] {}, [&](bool level) { irq.push_back(level); });
  out(kbc, I8042::kDataPort, 0xf2);  // GET ID
  REQUIRE(!irq.empty());
  CHECK(irq.back());
  CHECK(in(kbc, I8042::kDataPort) == 0xfa);
  CHECK(in(kbc, I8042::kDataPort) == 0xab);
  CHECK(in(kbc, I8042::kDataPort) == 0x83);
  CHECK_FALSE(irq.back());
  out(kbc, I8042::kDataPort, 0xed);  // set LEDs, then its parameter
  CHECK(in(kbc, I8042::kDataPort) == 0xfa);
  out(kbc, I8042::kDataPort, 0x00);
  CHECK(in(kbc, I8042::kDataPort) == 0xfa);
}

TEST_CASE("i8042: without an IRQ line the keyboard stays silent; odd ports are harmless") {
  I8042 kbc([] {});
  out(kbc, I8042::kDataPort, 0xf2);
  CHECK((in(kbc, I8042::kCommandPort) & 0x01) == 0);
  CHECK(in(kbc, 1) == 0);  // port 0x61
  out(kbc, 2, 0xff);
  uint8_t wide[4] = {};
  kbc.read(I8042::kCommandPort, std::span(wide, 4));
  CHECK(wide[3] == 0xff);
  kbc.write(0, std::span<const uint8_t>());
}

TEST_CASE("debug port: markers and exit status per docs/guest-abi.md") {
  std::vector<uint8_t> markers, statuses;
  DebugPort dp([&](uint8_t m) { markers.push_back(m); }, [&](uint8_t s) { statuses.push_back(s); });
  out(dp, DebugPort::kMarker, 0x01);
  out(dp, DebugPort::kMarker, 0x7f);
  out(dp, DebugPort::kMarker, 0x80);  // out of range: ignored
  out(dp, DebugPort::kMarker, 0x00);
  out(dp, DebugPort::kStatus, 0);
  out(dp, DebugPort::kStatus, 255);
  const uint8_t word[2] = {0x05, 0x06};
  dp.write(0, word);  // the ABI is byte-wide: ignored
  CHECK(markers == std::vector<uint8_t>{0x01, 0x7f});
  CHECK(statuses == std::vector<uint8_t>{0, 255});
  CHECK(in(dp, 0) == 0xff);
  CHECK(in(dp, 1) == 0xff);
}

TEST_CASE("acpi pm: SLP_TYP 5 with SLP_EN powers off; the reset register resets") {
  int off = 0, resets = 0;
  AcpiPm pm([&] { ++off; }, [&] { ++resets; });
  out(pm, AcpiPm::kSleepControl, 5 << 2);  // type without enable: nothing yet
  CHECK(off == 0);
  out(pm, AcpiPm::kSleepControl, 3 << 2 | AcpiPm::kSlpEn);  // S3: not supported
  CHECK(off == 0);
  out(pm, AcpiPm::kSleepControl, 5 << 2 | AcpiPm::kSlpEn);  // 0x34, what Linux writes
  CHECK(off == 1);
  out(pm, AcpiPm::kReset, 0x02);
  CHECK(resets == 0);
  out(pm, AcpiPm::kReset, AcpiPm::kResetValue);
  CHECK(resets == 1);
  CHECK(in(pm, AcpiPm::kSleepStatus) == 0);
  uint8_t wide[4] = {};
  pm.read(1, std::span(wide, 4));
  CHECK(wide[3] == 0xff);
}
