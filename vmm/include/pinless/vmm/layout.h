// The guest-physical address map of a pinless x86_64 guest, in one place. Everything that
// puts something at a fixed guest address (boot structures, devices, memslots, E820, ACPI)
// takes it from here. Value types and constants; thread-safe.
//
//   0x0000_0500  boot GDT (null, null, code 0x10, data 0x18, TSS 0x20)
//   0x0000_0520  boot IDT (empty)
//   0x0000_7000  zero page (struct boot_params)
//   0x0000_8ff0  initial stack of vCPU 0 (grows down towards the zero page)
//   0x0000_9000  PML4, 0xa000 PDPT, 0xb000..0xefff four page directories (2 MiB pages, 0..4G)
//   0x0002_0000  kernel command line
//   0x0009_fc00  EBDA (reserved) .. 0xa0000
//   0x000e_0000  ACPI tables (RSDP first) .. 0xfffff (reserved)
//   0x0010_0000  protected-mode kernel (bzImage), then RAM up to the end of low RAM
//   low RAM      0 .. min(ram, 3 GiB)
//   0xc000_0000  32-bit PCI MMIO window (512 MiB)
//   0xe000_0000  PCI ECAM, 256 buses (256 MiB)
//   0xfec0_0000  IOAPIC, 0xfee0_0000 LAPIC (in-kernel irqchip)
//   0xfffb_c000  EPT identity map page, 0xfffb_d000 TSS (3 pages), both for KVM on Intel
//   4 GiB        high RAM (the part of guest RAM above 3 GiB)
//   64-bit PCI MMIO window: 16 GiB at the first 1 GiB boundary >= max(4 GiB, end of RAM)
#pragma once

#include <algorithm>
#include <cstdint>

#include "pinless/base/types.h"

namespace pinless::vmm::layout {

// Boot structures (vCPU 0 enters the kernel in 64-bit mode with these in place).
constexpr Gpa kBootGdt{0x500};
constexpr Gpa kBootIdt{0x520};
constexpr Gpa kZeroPage{0x7000};
constexpr Gpa kBootStack{0x8ff0};
constexpr Gpa kPml4{0x9000};
constexpr Gpa kPdpt{0xa000};
constexpr Gpa kPageDirs{0xb000};  // 4 pages: 0xb000..0xefff
constexpr Gpa kPageTablesEnd{0xf000};
constexpr Gpa kCmdline{0x20000};
constexpr uint64_t kCmdlineMax = 0x10000;  // our buffer; the kernel's cmdline_size is smaller

// Legacy PC holes.
constexpr Gpa kEbdaStart{0x9fc00};
constexpr Gpa kIsaHoleStart{0xa0000};
constexpr Gpa kAcpiTables{0xe0000};
constexpr uint64_t kAcpiTablesMax = 0x20000;  // 0xe0000..0xfffff
constexpr Gpa kHighMemStart{0x100000};       // 1 MiB: where the bzImage kernel is loaded

// Platform MMIO.
constexpr Range<Gpa> kPciMmio32{Gpa(0xc0000000), 0x20000000};
constexpr Range<Gpa> kEcam{Gpa(0xe0000000), 0x10000000};  // buses 0..255
constexpr Range<uint64_t> kPciIoPorts{0x1000, 0xf000};   // I/O BARs: the DSDT's WordIO 0x1000..0xffff
constexpr Gpa kIoapic{0xfec00000};
constexpr Gpa kLapic{0xfee00000};
constexpr uint64_t kIoapicSize = 0x1000;
constexpr uint64_t kLapicMsiSize = 0x100000;  // the LAPIC page and the MSI window up to 0xfeefffff
constexpr Gpa kIdentityMap{0xfffbc000};  // KVM_SET_IDENTITY_MAP_ADDR (1 page)
constexpr Gpa kTss{0xfffbd000};          // KVM_SET_TSS_ADDR (3 pages)

// RAM split around the 32-bit hole.
constexpr uint64_t kLowRamMax = 0xc0000000;
constexpr Gpa kHighRamStart{4 * kGiB};
constexpr uint64_t kPciMmio64Size = 16 * kGiB;

// Legacy I/O ports and IRQs.
constexpr uint16_t kCom1Port = 0x3f8;
constexpr uint16_t kCom1Size = 8;
constexpr uint32_t kCom1Irq = 4;
constexpr uint16_t kI8042Port = 0x60;
constexpr uint16_t kI8042Size = 5;
constexpr uint32_t kI8042KeyboardIrq = 1;
// The ACPI Generic Event Device (the DSDT's \_SB.GED0, which signals the power button): a
// free ISA IRQ, edge-triggered and active-high as every ISA IRQ is without a MADT override,
// so its _CRS and the guest's IOAPIC setup agree. Not 9: the FADT names 9 as the SCI and
// the MADT overrides it to level-triggered.
constexpr uint32_t kGedIrq = 5;
constexpr uint16_t kDebugPort = 0xf4;
constexpr uint16_t kDebugPortSize = 2;
constexpr uint16_t kAcpiPmPort = 0x3c0;
constexpr uint16_t kAcpiPmSize = 3;
constexpr uint16_t kPciConfigPort = 0xcf8;
constexpr uint16_t kPciConfigSize = 8;

// Where everything goes for a guest with `ram_size` bytes of RAM.
struct MemoryLayout {
  Range<Gpa> low_ram;
  Range<Gpa> high_ram;  // size 0 when all RAM fits below the hole
  Range<Gpa> pci_mmio32;
  Range<Gpa> ecam;
  Range<Gpa> pci_mmio64;

  constexpr uint64_t ram_size() const { return low_ram.size + high_ram.size; }
  // End of the highest RAM region (exclusive).
  constexpr Gpa ram_end() const { return high_ram.size != 0 ? high_ram.end() : low_ram.end(); }
};

constexpr MemoryLayout compute_layout(uint64_t ram_size) {
  MemoryLayout l{};
  l.low_ram = {Gpa(0), std::min(ram_size, kLowRamMax)};
  l.high_ram = {kHighRamStart, ram_size - l.low_ram.size};
  l.pci_mmio32 = kPciMmio32;
  l.ecam = kEcam;
  uint64_t base = std::max(kHighRamStart.value(), l.ram_end().value());
  l.pci_mmio64 = {Gpa(align_up(base, kGiB)), kPciMmio64Size};
  return l;
}

}  // namespace pinless::vmm::layout
