// The ACPI tables of a pinless x86_64 guest: RSDP (revision 2), XSDT, FADT (revision 6,
// hardware-reduced), DSDT (hand-written AML, see dsdt.h), MADT, MCFG and, when the guest has
// a virtio-iommu, the VIOT (see viot.h), built as one blob that the builder copies to
// guest-physical `base` (layout::kAcpiTables). The RSDP comes first, so Linux's legacy scan
// of 0xe0000..0xfffff finds it too; the other tables follow at 16-byte aligned offsets and
// point at each other with absolute guest addresses.
// Pure functions over a value-type config; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "pinless/base/types.h"
#include "pinless/vmm/acpi/viot.h"
#include "pinless/vmm/layout.h"

namespace pinless::vmm::acpi {

struct AcpiConfig {
  uint32_t cpus = 1;  // one enabled Local APIC (x2APIC above id 254) per vCPU, ids 0..cpus-1

  // PCI segment 0: ECAM and the host bridge windows the guest may assign BARs from.
  Range<Gpa> ecam = layout::kEcam;
  uint8_t bus_start = 0;
  uint8_t bus_end = 255;  // the ECAM must cover (bus_end - bus_start + 1) MiB
  Range<Gpa> pci_mmio32 = layout::kPciMmio32;
  Range<Gpa> pci_mmio64{};  // size 0: no 64-bit window is described
  Range<uint64_t> pci_io = layout::kPciIoPorts;  // I/O ports for I/O BARs

  // Hardware-reduced power registers (devices::AcpiPm).
  uint16_t sleep_control_port = layout::kAcpiPmPort;
  uint16_t sleep_status_port = layout::kAcpiPmPort + 1;
  uint16_t reset_port = layout::kAcpiPmPort + 2;
  uint8_t reset_value = 0x01;

  // COM1 (devices::Serial8250); serial_port 0 leaves it out of the DSDT.
  uint16_t serial_port = layout::kCom1Port;
  uint8_t serial_irq = layout::kCom1Irq;

  // The Generic Event Device whose only event is the power button (edge, active high).
  uint32_t ged_irq = layout::kGedIrq;

  // Interrupt controllers (KVM's in-kernel irqchip).
  Gpa ioapic = layout::kIoapic;
  uint8_t ioapic_id = 0;
  uint32_t ioapic_gsi_base = 0;
  Gpa lapic = layout::kLapic;
  uint16_t sci_irq = 9;  // level-triggered, active-high (MADT interrupt source override)

  // The virtio-iommu topology; nullopt (no virtio-iommu) leaves the VIOT out and the blob
  // exactly as without this field. build_acpi_tables cannot fail, so whoever fills this in
  // (from user input) calls validate(*viot) first; an invalid one reaching
  // build_acpi_tables is a programming error and aborts.
  std::optional<ViotConfig> viot;

  // The config for a guest laid out by layout::compute_layout (adds the 64-bit window).
  static AcpiConfig for_layout(const layout::MemoryLayout& l, uint32_t cpus);
};

// Offsets of the tables inside the blob (for tests and logs).
struct AcpiBlobLayout {
  size_t rsdp, xsdt, fadt, dsdt, madt, mcfg;
  size_t viot;  // after the MCFG; 0 when AcpiConfig::viot is nullopt
  size_t size;
};

// The whole blob, to be copied to guest-physical `base`; RSDP at offset 0.
// At most a few KiB for any cpus <= 4096, well inside layout::kAcpiTablesMax.
std::vector<uint8_t> build_acpi_tables(const AcpiConfig& config, Gpa base,
                                       AcpiBlobLayout* layout_out = nullptr);

// The individual tables (each complete with a valid checksum).
std::vector<uint8_t> build_madt(const AcpiConfig& config);
std::vector<uint8_t> build_mcfg(const AcpiConfig& config);
std::vector<uint8_t> build_fadt(const AcpiConfig& config, Gpa dsdt);
std::vector<uint8_t> build_xsdt(const std::vector<Gpa>& tables);
std::vector<uint8_t> build_rsdp(Gpa xsdt);

}  // namespace pinless::vmm::acpi
