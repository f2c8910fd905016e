#include "pinless/vmm/kvm/boot_cpu.h"

#include <cstring>

#include "pinless/vmm/layout.h"

namespace pinless::vmm::boot_cpu {
namespace {
kvm_segment flat_segment(uint16_t selector, uint8_t type, bool code) {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xffffffff;  // bytes; g = 1 makes the descriptor limit 0xfffff pages
  s.selector = selector;
  s.type = type;
  s.present = 1;
  s.dpl = 0;
  s.db = code ? 0 : 1;  // D must be 0 when L is 1
  s.s = 1;
  s.l = code ? 1 : 0;
  s.g = 1;
  s.avl = 0;
  s.unusable = 0;
  return s;
}
}  // namespace

kvm_segment code_segment() { return flat_segment(kCodeSelector, 0xb, true); }  // exec/read, accessed
kvm_segment data_segment() { return flat_segment(kDataSelector, 0x3, false); }  // read/write, accessed

kvm_segment tss_segment() {
  kvm_segment s = flat_segment(kTssSelector, 0xb, false);  // busy 64-bit TSS
  s.s = 0;
  s.db = 0;
  return s;
}

uint64_t gdt_entry(const kvm_segment& seg) {
  uint64_t limit = seg.g ? (uint64_t(seg.limit) >> 12) : seg.limit;
  uint64_t base = seg.base;
  return (limit & 0xffff) | ((base & 0xffffff) << 16) | (uint64_t(seg.type & 0xf) << 40) |
         (uint64_t(seg.s & 1) << 44) | (uint64_t(seg.dpl & 3) << 45) |
         (uint64_t(seg.present & 1) << 47) | (((limit >> 16) & 0xf) << 48) |
         (uint64_t(seg.avl & 1) << 52) | (uint64_t(seg.l & 1) << 53) |
         (uint64_t(seg.db & 1) << 54) | (uint64_t(seg.g & 1) << 55) |
         (((base >> 24) & 0xff) << 56);
}

Status write_page_tables(const GuestMemory& mem) {
  constexpr uint64_t kPresentWritable = 0x3;
  constexpr uint64_t kPageSize2M = 0x80;
  // Zero the whole table area first so stale guest bytes can never become mappings.
  PINLESS_TRY_VOID(mem.zero(layout::kPml4, layout::kPageTablesEnd - layout::kPml4));
  PINLESS_TRY_VOID(mem.write_obj(layout::kPml4, layout::kPdpt.value() | kPresentWritable));
  for (uint64_t i = 0; i < 4; ++i) {
    Gpa pd = layout::kPageDirs + i * kPageSize;
    PINLESS_TRY_VOID(mem.write_obj(layout::kPdpt + i * 8, pd.value() | kPresentWritable));
    std::vector<uint64_t> entries(512);
    for (uint64_t j = 0; j < 512; ++j) {
      entries[j] = ((i * 512 + j) << 21) | kPresentWritable | kPageSize2M;
    }
    PINLESS_TRY_VOID(mem.write(pd, std::span(reinterpret_cast<const uint8_t*>(entries.data()),
                                             entries.size() * 8)));
  }
  return {};
}

Status write_gdt_idt(const GuestMemory& mem) {
  uint64_t gdt[kGdtEntries] = {0, 0, gdt_entry(code_segment()), gdt_entry(data_segment()),
                               gdt_entry(tss_segment())};
  PINLESS_TRY_VOID(mem.write_obj(layout::kBootGdt, gdt));
  return mem.write_obj(layout::kBootIdt, uint64_t{0});
}

void setup_long_mode(kvm_sregs& sregs) {
  sregs.gdt.base = layout::kBootGdt.value();
  sregs.gdt.limit = sizeof(uint64_t) * kGdtEntries - 1;
  sregs.idt.base = layout::kBootIdt.value();
  sregs.idt.limit = sizeof(uint64_t) - 1;
  sregs.cs = code_segment();
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data_segment();
  sregs.tr = tss_segment();
  sregs.cr3 = layout::kPml4.value();
  sregs.cr4 |= kCr4Pae;
  sregs.cr0 = (sregs.cr0 | kCr0Pe | kCr0Pg) & ~(kCr0Cd | kCr0Nw);
  sregs.efer |= kEferLme | kEferLma;
}

kvm_regs boot_regs(Gpa entry, Gpa zero_page) {
  kvm_regs regs{};
  regs.rflags = 0x2;  // bit 1 is reserved-one; IF = 0
  regs.rip = entry.value();
  regs.rsp = layout::kBootStack.value();
  regs.rbp = layout::kBootStack.value();
  regs.rsi = zero_page.value();
  return regs;
}

kvm_fpu boot_fpu() {
  kvm_fpu fpu{};
  fpu.fcw = 0x37f;
  fpu.mxcsr = 0x1f80;
  return fpu;
}

std::vector<kvm_msr_entry> boot_msrs() {
  constexpr uint64_t kMiscEnableFastString = 1;
  constexpr uint64_t kMtrrEnable = 1ull << 11;
  constexpr uint64_t kMtrrTypeWriteBack = 6;
  auto e = [](uint32_t index, uint64_t data) {
    kvm_msr_entry m{};
    m.index = index;
    m.data = data;
    return m;
  };
  return {e(kMsrSysenterCs, 0),   e(kMsrSysenterEsp, 0),  e(kMsrSysenterEip, 0),
          e(kMsrStar, 0),         e(kMsrCstar, 0),        e(kMsrKernelGsBase, 0),
          e(kMsrSyscallMask, 0),  e(kMsrLstar, 0),        e(kMsrIa32Tsc, 0),
          e(kMsrMiscEnable, kMiscEnableFastString),
          e(kMsrMtrrDefType, kMtrrEnable | kMtrrTypeWriteBack)};
}

uint32_t lapic_reg(const kvm_lapic_state& lapic, uint32_t offset) {
  uint32_t v;
  std::memcpy(&v, lapic.regs + offset, sizeof(v));
  return v;
}

void set_lints(kvm_lapic_state& lapic) {
  auto set_mode = [&](uint32_t offset, uint32_t mode) {
    uint32_t v = lapic_reg(lapic, offset);
    v = (v & ~0x700u) | (mode << 8);
    std::memcpy(lapic.regs + offset, &v, sizeof(v));
  };
  set_mode(kApicLvtLint0, kApicModeExtInt);
  set_mode(kApicLvtLint1, kApicModeNmi);
}

}  // namespace pinless::vmm::boot_cpu
