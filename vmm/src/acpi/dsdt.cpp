#include "pinless/vmm/acpi/dsdt.h"

#include "pinless/vmm/acpi/aml.h"
#include "pinless/vmm/acpi/sdt.h"

namespace pinless::vmm::acpi {
namespace {

using aml::Bytes;

constexpr uint16_t kPciConfigPort = 0xcf8;
constexpr uint8_t kPciConfigPorts = 8;

Bytes pci_host_bridge(const AcpiConfig& c) {
  aml::ResourceTemplate crs;
  crs.word_bus_number(c.bus_start, c.bus_end);
  crs.io(kPciConfigPort, kPciConfigPort, 1, kPciConfigPorts);
  if (c.pci_io.size != 0) {
    crs.word_io(uint16_t(c.pci_io.start), uint16_t(c.pci_io.start + c.pci_io.size - 1));
  }
  if (c.pci_mmio32.size != 0) {
    crs.dword_memory(uint32_t(c.pci_mmio32.start.value()),
                     uint32_t(c.pci_mmio32.start.value() + c.pci_mmio32.size - 1), false);
  }
  if (c.pci_mmio64.size != 0) {
    crs.qword_memory(c.pci_mmio64.start.value(), c.pci_mmio64.start.value() + c.pci_mmio64.size - 1,
                     true);
  }
  return aml::device("PCI0", {
      aml::name("_HID", aml::eisa_id("PNP0A08")),
      aml::name("_CID", aml::eisa_id("PNP0A03")),
      aml::name("_ADR", aml::integer(0)),
      aml::name("_SEG", aml::integer(0)),
      aml::name("_BBN", aml::integer(c.bus_start)),
      aml::name("_UID", aml::integer(0)),
      aml::name("_CRS", crs.build()),
  });
}

// Linux only uses the MCFG ECAM when it is reserved by a PNP0C01/PNP0C02 device (or by
// E820); otherwise it falls back to the CF8/CFC ports and loses extended config space.
Bytes motherboard_resources(const AcpiConfig& c) {
  aml::ResourceTemplate crs;
  uint64_t ecam_len = uint64_t(c.bus_end - c.bus_start + 1) << 20;
  crs.memory32_fixed(uint32_t(c.ecam.start.value()), uint32_t(ecam_len));
  return aml::device("MRES", {
      aml::name("_HID", aml::eisa_id("PNP0C02")),
      aml::name("_UID", aml::integer(0)),
      aml::name("_CRS", crs.build()),
  });
}

Bytes com1(const AcpiConfig& c) {
  aml::ResourceTemplate crs;
  crs.io(c.serial_port, c.serial_port, 0, 8);
  crs.irq_no_flags(c.serial_irq);
  return aml::device("COM1", {
      aml::name("_HID", aml::eisa_id("PNP0501")),
      aml::name("_UID", aml::integer(1)),
      aml::name("_CRS", crs.build()),
  });
}

// A hardware-reduced platform has no fixed-feature power button (the FADT says so) and no
// GPE blocks, so the button is a control-method device (PNP0C0C) whose presses arrive
// through a Generic Event Device: the VMM pulses the GED's interrupt, Linux's GED driver
// runs _EVT, and Notify(PWRB, 0x80) makes the button driver report KEY_POWER. With one
// event source, _EVT needs no status register to tell events apart.
Bytes generic_event_device(const AcpiConfig& c) {
  aml::ResourceTemplate crs;
  crs.extended_interrupt(c.ged_irq, aml::Trigger::kEdge, aml::Polarity::kActiveHigh);
  constexpr uint64_t kButtonPressed = 0x80;  // "status change": the button was pressed
  return aml::device("GED0", {
      aml::name("_HID", aml::string("ACPI0013")),
      aml::name("_UID", aml::integer(0)),
      aml::name("_CRS", crs.build()),
      aml::method("_EVT", 1, false, {aml::notify("\\_SB.PWRB", aml::integer(kButtonPressed))}),
  });
}

Bytes power_button() {
  return aml::device("PWRB", {
      aml::name("_HID", aml::eisa_id("PNP0C0C")),
      aml::name("_UID", aml::integer(0)),
  });
}

}  // namespace

std::vector<uint8_t> build_dsdt(const AcpiConfig& config) {
  std::vector<Bytes> sb = {pci_host_bridge(config)};
  if (config.ecam.size != 0) sb.push_back(motherboard_resources(config));
  if (config.serial_port != 0) sb.push_back(com1(config));
  sb.push_back(generic_event_device(config));
  sb.push_back(power_button());

  Bytes body = aml::scope("\\_SB", sb);
  // \_S5_: SLP_TYPa, SLP_TYPb and two reserved entries. Hardware-reduced OSPM writes
  // SLP_TYPa << 2 | SLP_EN to the sleep control register.
  Bytes s5 = aml::name("\\_S5", aml::package({aml::integer(kS5SleepType), aml::integer(0),
                                              aml::integer(0), aml::integer(0)}));
  body.insert(body.end(), s5.begin(), s5.end());

  // Revision 2: integers are 64 bits wide (needed for the QWord 64-bit window).
  Sdt dsdt("DSDT", 2);
  dsdt.bytes(body);
  return std::move(dsdt).finish();
}

}  // namespace pinless::vmm::acpi
