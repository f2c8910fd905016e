// The x86_64 state in which vCPU 0 enters a Linux kernel's 64-bit entry point (Linux boot
// protocol, "64-bit BOOT PROTOCOL"): long mode with identity-mapped 2 MiB pages for the first
// 4 GiB, a flat GDT with __BOOT_CS = 0x10 and __BOOT_DS = 0x18, interrupts off, RSI = zero
// page. Also the MSRs and LAPIC LINT setup every vCPU gets. Pure functions over KVM structs
// plus two writers into guest memory; thread-safe.
#pragma once

#include "pinless/base/linux_kvm.h"

#include <cstdint>
#include <vector>

#include "pinless/base/result.h"
#include "pinless/base/types.h"
#include "pinless/vmm/memory/guest_memory.h"

namespace pinless::vmm::boot_cpu {

constexpr uint16_t kCodeSelector = 0x10;
constexpr uint16_t kDataSelector = 0x18;
constexpr uint16_t kTssSelector = 0x20;
constexpr int kGdtEntries = 5;  // null, null, code, data, tss

constexpr uint64_t kCr0Pe = 1ull << 0;
constexpr uint64_t kCr0Nw = 1ull << 29;
constexpr uint64_t kCr0Cd = 1ull << 30;
constexpr uint64_t kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pae = 1ull << 5;
constexpr uint64_t kEferLme = 1ull << 8;
constexpr uint64_t kEferLma = 1ull << 10;

// MSR numbers (arch/x86/include/asm/msr-index.h is not a uapi header).
constexpr uint32_t kMsrIa32Tsc = 0x10;
constexpr uint32_t kMsrSysenterCs = 0x174;
constexpr uint32_t kMsrSysenterEsp = 0x175;
constexpr uint32_t kMsrSysenterEip = 0x176;
constexpr uint32_t kMsrMiscEnable = 0x1a0;
constexpr uint32_t kMsrMtrrDefType = 0x2ff;
constexpr uint32_t kMsrStar = 0xc0000081;
constexpr uint32_t kMsrLstar = 0xc0000082;
constexpr uint32_t kMsrCstar = 0xc0000083;
constexpr uint32_t kMsrSyscallMask = 0xc0000084;
constexpr uint32_t kMsrKernelGsBase = 0xc0000102;

// LAPIC register offsets and LVT delivery modes.
constexpr uint32_t kApicLvtLint0 = 0x350;
constexpr uint32_t kApicLvtLint1 = 0x360;
constexpr uint32_t kApicModeNmi = 0x4;
constexpr uint32_t kApicModeExtInt = 0x7;

// Flat 4 GiB segments of the boot GDT.
kvm_segment code_segment();
kvm_segment data_segment();
kvm_segment tss_segment();
// The 8-byte GDT descriptor for a segment.
uint64_t gdt_entry(const kvm_segment& seg);

// PML4 at 0x9000 -> PDPT at 0xa000 -> 4 page directories at 0xb000.., 2 MiB pages, 0..4 GiB.
[[nodiscard]] Status write_page_tables(const GuestMemory& mem);
// GDT at 0x500 and an empty IDT at 0x520.
[[nodiscard]] Status write_gdt_idt(const GuestMemory& mem);

// Turns the reset-state sregs (from KVM_GET_SREGS) into 64-bit long mode. CR0.CD/NW are
// cleared, as firmware leaves them: the kernel decompresses itself before it reloads CR0.
void setup_long_mode(kvm_sregs& sregs);
// RIP = entry, RSI = zero page, RSP/RBP = boot stack, RFLAGS = 0x2 (interrupts off).
kvm_regs boot_regs(Gpa entry, Gpa zero_page);
// x87 control word and MXCSR at their reset values.
kvm_fpu boot_fpu();
// The MSRs every vCPU starts with (SYSCALL/SYSENTER cleared, fast strings, MTRRs on with
// write-back default).
std::vector<kvm_msr_entry> boot_msrs();
// LVT LINT0 = ExtINT (the PIC), LINT1 = NMI, as a BIOS would leave them.
void set_lints(kvm_lapic_state& lapic);
uint32_t lapic_reg(const kvm_lapic_state& lapic, uint32_t offset);

}  // namespace pinless::vmm::boot_cpu
