#include "pinless/vmm/acpi/tables.h"

#include <algorithm>
#include <cstdlib>

#include "pinless/base/log.h"
#include "pinless/vmm/acpi/dsdt.h"
#include "pinless/vmm/acpi/sdt.h"
#include "pinless/vmm/acpi/viot.h"

namespace pinless::vmm::acpi {
namespace {

constexpr size_t kRsdpSize = 36;
constexpr size_t kFadtSize = 276;  // revision 6
constexpr size_t kTableAlign = 16;

// FADT fixed feature flags (ACPI 6.x table 5.10).
constexpr uint32_t kFadtWbinvd = 1u << 0;
constexpr uint32_t kFadtPowerButtonAbsent = 1u << 4;  // PWR_BUTTON: no fixed power button
constexpr uint32_t kFadtSleepButtonAbsent = 1u << 5;  // SLP_BUTTON
constexpr uint32_t kFadtResetRegSupported = 1u << 10;
constexpr uint32_t kFadtHwReduced = 1u << 20;

// IA-PC boot architecture flags (table 5.11). Not set: LEGACY_DEVICES (no ISA PnP BIOS),
// MSI_NOT_SUPPORTED (MSI works), so only these:
constexpr uint16_t kBootArch8042 = 1u << 1;       // keeps i8042 (and its reset) probed
constexpr uint16_t kBootArchNoVga = 1u << 2;
constexpr uint16_t kBootArchNoAspm = 1u << 4;     // PCIe ASPM controls: OS must not touch ASPM
constexpr uint16_t kBootArchNoCmosRtc = 1u << 5;  // no RTC at 0x70: Linux must not poll it

// MADT structure types and flags.
constexpr uint8_t kMadtLocalApic = 0, kMadtIoApic = 1, kMadtIso = 2, kMadtLapicNmi = 4,
                  kMadtLocalX2Apic = 9;
constexpr uint32_t kMadtPcatCompat = 1;  // dual 8259s present (KVM's PIC): Linux masks them
constexpr uint32_t kLapicEnabled = 1;
constexpr uint16_t kIsoActiveHighLevel = 0x1 | (0x3 << 2);

size_t align(size_t v) { return (v + kTableAlign - 1) & ~(kTableAlign - 1); }

}  // namespace

AcpiConfig AcpiConfig::for_layout(const layout::MemoryLayout& l, uint32_t cpus) {
  AcpiConfig c;
  c.cpus = cpus;
  c.ecam = l.ecam;
  c.bus_end = uint8_t(std::min<uint64_t>(255, (l.ecam.size >> 20) - 1));
  c.pci_mmio32 = l.pci_mmio32;
  c.pci_mmio64 = l.pci_mmio64;
  return c;
}

std::vector<uint8_t> build_madt(const AcpiConfig& c) {
  Sdt madt("APIC", 4);
  madt.u32(uint32_t(c.lapic.value()));
  madt.u32(kMadtPcatCompat);
  uint32_t cpus = std::max<uint32_t>(c.cpus, 1);
  for (uint32_t id = 0; id < cpus; ++id) {
    if (id < 255) {  // 0xff is the broadcast id: larger ids need x2APIC entries
      madt.u8(kMadtLocalApic).u8(8).u8(uint8_t(id)).u8(uint8_t(id)).u32(kLapicEnabled);
    } else {
      madt.u8(kMadtLocalX2Apic).u8(16).u16(0).u32(id).u32(kLapicEnabled).u32(id);
    }
  }
  madt.u8(kMadtIoApic).u8(12).u8(c.ioapic_id).u8(0);
  madt.u32(uint32_t(c.ioapic.value())).u32(c.ioapic_gsi_base);
  // ISA IRQ 0 (the PIT) is wired to IOAPIC pin 2, as on every PC.
  madt.u8(kMadtIso).u8(10).u8(0).u8(0).u32(2).u16(0);
  // The SCI is level-triggered, active high.
  madt.u8(kMadtIso).u8(10).u8(0).u8(uint8_t(c.sci_irq)).u32(c.sci_irq).u16(kIsoActiveHighLevel);
  // LINT1 of every processor is the NMI input.
  madt.u8(kMadtLapicNmi).u8(6).u8(0xff).u16(0).u8(1);
  return std::move(madt).finish();
}

std::vector<uint8_t> build_mcfg(const AcpiConfig& c) {
  Sdt mcfg("MCFG", 1);
  mcfg.zeros(8);  // reserved
  mcfg.u64(c.ecam.start.value()).u16(0 /* segment */).u8(c.bus_start).u8(c.bus_end).u32(0);
  return std::move(mcfg).finish();
}

std::vector<uint8_t> build_fadt(const AcpiConfig& c, Gpa dsdt) {
  Sdt fadt("FACP", 6);
  fadt.zeros(kFadtSize - kSdtHeaderSize);
  // FIRMWARE_CTRL / X_FIRMWARE_CTRL stay 0: a hardware-reduced platform needs no FACS.
  fadt.put_u32(40, dsdt.value() < (1ull << 32) ? uint32_t(dsdt.value()) : 0);
  fadt.put_u16(46, c.sci_irq);
  fadt.put_u16(109, kBootArch8042 | kBootArchNoVga | kBootArchNoAspm | kBootArchNoCmosRtc);
  fadt.put_u32(112, kFadtWbinvd | kFadtPowerButtonAbsent | kFadtSleepButtonAbsent |
                        kFadtResetRegSupported | kFadtHwReduced);
  fadt.put_gas(116, GasSpace::kSystemIo, 8, 1, c.reset_port);  // RESET_REG
  fadt.put_u8(128, c.reset_value);
  fadt.put_u8(131, 0);  // FADT minor version: ACPI 6.0
  fadt.put_u64(140, dsdt.value());  // X_DSDT
  fadt.put_gas(244, GasSpace::kSystemIo, 8, 1, c.sleep_control_port);  // SLEEP_CONTROL_REG
  fadt.put_gas(256, GasSpace::kSystemIo, 8, 1, c.sleep_status_port);   // SLEEP_STATUS_REG
  const uint8_t vendor[8] = {'P', 'I', 'N', 'L', 'E', 'S', 'S', 0};    // hypervisor identity
  for (size_t i = 0; i < 8; ++i) fadt.put_u8(268 + i, vendor[i]);
  return std::move(fadt).finish();
}

std::vector<uint8_t> build_xsdt(const std::vector<Gpa>& tables) {
  Sdt xsdt("XSDT", 1);
  for (Gpa t : tables) xsdt.u64(t.value());
  return std::move(xsdt).finish();
}

std::vector<uint8_t> build_rsdp(Gpa xsdt) {
  std::vector<uint8_t> r(kRsdpSize, 0);
  const char sig[] = "RSD PTR ";
  std::copy(sig, sig + 8, r.begin());
  std::copy(kOemId.begin(), kOemId.end(), r.begin() + 9);
  r[15] = 2;  // revision: ACPI 2.0+ (XSDT); the 32-bit RSDT address stays 0
  auto put = [&](size_t off, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) r[off + size_t(i)] = uint8_t(v >> (8 * i));
  };
  put(20, kRsdpSize, 4);
  put(24, xsdt.value(), 8);
  r[8] = checksum_byte(std::span(r).first(20));  // ACPI 1.0 checksum: first 20 bytes
  r[32] = checksum_byte(r);                        // extended checksum: all 36 bytes
  return r;
}

std::vector<uint8_t> build_acpi_tables(const AcpiConfig& config, Gpa base,
                                       AcpiBlobLayout* layout_out) {
  // Tables without pointers first; then the ones that point at them, now that sizes are known.
  std::vector<uint8_t> dsdt = build_dsdt(config);
  std::vector<uint8_t> madt = build_madt(config);
  std::vector<uint8_t> mcfg = build_mcfg(config);
  std::vector<uint8_t> viot;
  if (config.viot.has_value()) {
    auto built = build_viot(*config.viot);
    if (!built) {
      // The caller was to validate() it (AcpiConfig::viot): a bug, not user input.
      logger("vmm")->critical("ACPI: invalid VIOT config: {}", built.error().message());
      std::abort();
    }
    viot = std::move(*built);
  }
  const size_t xsdt_entries = viot.empty() ? 3 : 4;

  AcpiBlobLayout l{};
  l.rsdp = 0;
  l.xsdt = align(kRsdpSize);
  l.fadt = align(l.xsdt + kSdtHeaderSize + xsdt_entries * 8);
  l.dsdt = align(l.fadt + kFadtSize);
  l.madt = align(l.dsdt + dsdt.size());
  l.mcfg = align(l.madt + madt.size());
  l.size = l.mcfg + mcfg.size();
  l.viot = 0;
  if (!viot.empty()) {
    l.viot = align(l.size);
    l.size = l.viot + viot.size();
  }

  std::vector<uint8_t> fadt = build_fadt(config, base + l.dsdt);
  std::vector<Gpa> listed = {base + l.fadt, base + l.madt, base + l.mcfg};
  if (!viot.empty()) listed.push_back(base + l.viot);
  std::vector<uint8_t> xsdt = build_xsdt(listed);
  std::vector<uint8_t> rsdp = build_rsdp(base + l.xsdt);

  std::vector<uint8_t> blob(l.size, 0);
  auto place = [&](size_t off, const std::vector<uint8_t>& t) {
    std::copy(t.begin(), t.end(), blob.begin() + ptrdiff_t(off));
  };
  place(l.rsdp, rsdp);
  place(l.xsdt, xsdt);
  place(l.fadt, fadt);
  place(l.dsdt, dsdt);
  place(l.madt, madt);
  place(l.mcfg, mcfg);
  if (!viot.empty()) place(l.viot, viot);
  if (layout_out != nullptr) *layout_out = l;
  return blob;
}

}  // namespace pinless::vmm::acpi
