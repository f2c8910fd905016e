#include <doctest/doctest.h>

#include "fakes/fake_sys.h"
#include "pinless/vmm/kvm/boot_cpu.h"
#include "pinless/vmm/kvm/cpuid.h"
#include "pinless/vmm/layout.h"

using namespace pinless;
using namespace pinless::vmm;
using pinless::testing::FakeSys;

TEST_CASE("GDT descriptors are the canonical flat 64-bit ones") {
  CHECK(boot_cpu::gdt_entry(boot_cpu::code_segment()) == 0x00af9b000000ffffull);
  CHECK(boot_cpu::gdt_entry(boot_cpu::data_segment()) == 0x00cf93000000ffffull);
  CHECK(boot_cpu::gdt_entry(boot_cpu::tss_segment()) == 0x008f8b000000ffffull);
}

TEST_CASE("boot page tables identity-map 0..4 GiB with 2 MiB pages") {
  FakeSys sys;
  auto mem = GuestMemory::create(sys, {64 * kMiB, false, false});
  REQUIRE(mem);
  REQUIRE(boot_cpu::write_page_tables(*mem));
  CHECK(mem->read_obj<uint64_t>(Gpa(0x9000)).value() == 0xa003);
  for (uint64_t i = 0; i < 4; ++i) {
    CHECK(mem->read_obj<uint64_t>(Gpa(0xa000 + i * 8)).value() == ((0xb000 + i * 0x1000) | 3));
  }
  CHECK(mem->read_obj<uint64_t>(Gpa(0xa020)).value() == 0);  // nothing above 4 GiB
  // Walk a few addresses: PD entry index = addr >> 21 over the four contiguous PDs.
  for (uint64_t addr : {0ull, 0x200000ull, 0x1000000ull, 0xfee00000ull, 0xffe00000ull}) {
    uint64_t pde = mem->read_obj<uint64_t>(Gpa(0xb000 + (addr >> 21) * 8)).value();
    CHECK(pde == (addr | 0x83));
  }
}

TEST_CASE("GDT and IDT land at 0x500 and 0x520") {
  FakeSys sys;
  auto mem = GuestMemory::create(sys, {64 * kMiB, false, false});
  REQUIRE(mem);
  REQUIRE(mem->write_obj(Gpa(0x520), uint64_t{0xdead}));
  REQUIRE(boot_cpu::write_gdt_idt(*mem));
  CHECK(mem->read_obj<uint64_t>(Gpa(0x500)).value() == 0);
  CHECK(mem->read_obj<uint64_t>(Gpa(0x510)).value() == 0x00af9b000000ffffull);  // selector 0x10
  CHECK(mem->read_obj<uint64_t>(Gpa(0x518)).value() == 0x00cf93000000ffffull);  // selector 0x18
  CHECK(mem->read_obj<uint64_t>(Gpa(0x520)).value() == 0);
}

TEST_CASE("long mode sregs keep KVM's other reset state") {
  kvm_sregs s{};
  s.cr0 = 0x60000010;
  s.apic_base = 0xfee00900;
  boot_cpu::setup_long_mode(s);
  CHECK(s.cr0 == 0x80000011);  // PG | ET | PE; CD and NW cleared
  CHECK(s.apic_base == 0xfee00900);
  CHECK(s.efer == 0x500);
  CHECK(s.gdt.limit == 5 * 8 - 1);
  CHECK(s.ss.selector == 0x18);
  CHECK(s.cs.db == 0);
  CHECK(s.tr.selector == 0x20);
  CHECK(s.tr.s == 0);
}

TEST_CASE("boot MSRs enable MTRRs with write-back default and fast strings") {
  bool mtrr = false, misc = false;
  for (const auto& m : boot_cpu::boot_msrs()) {
    if (m.index == 0x2ff) mtrr = m.data == ((1u << 11) | 6);
    if (m.index == 0x1a0) misc = m.data == 1;
  }
  CHECK(mtrr);
  CHECK(misc);
}

namespace {
kvm_cpuid_entry2 leaf(uint32_t fn, uint32_t index = 0) {
  kvm_cpuid_entry2 e{};
  e.function = fn;
  e.index = index;
  if (fn == 0xb || fn == 0x1f || fn == 4) e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  return e;
}
}  // namespace

TEST_CASE("CPUID leaf 1: APIC ID, logical count, hypervisor bit, HTT") {
  std::vector<kvm_cpuid_entry2> e{leaf(1)};
  e[0].ebx = 0xabcd1234;  // low 16 bits (brand index, CLFLUSH size) must survive
  patch_cpuid(e, {3, 4, true});
  CHECK((e[0].ebx >> 24) == 3);
  CHECK(((e[0].ebx >> 16) & 0xff) == 4);
  CHECK((e[0].ebx & 0xffff) == 0x1234);
  CHECK((e[0].ecx >> 31) == 1);
  CHECK(((e[0].ecx >> 24) & 1) == 1);
  CHECK(((e[0].edx >> 28) & 1) == 1);

  std::vector<kvm_cpuid_entry2> one{leaf(1)};
  one[0].edx = 1u << 28;
  patch_cpuid(one, {0, 1, false});
  CHECK(((one[0].edx >> 28) & 1) == 0);
  CHECK(((one[0].ecx >> 24) & 1) == 0);
}

TEST_CASE("CPUID leaves 0xB/0x1F: x2APIC ID and a flat core topology") {
  std::vector<kvm_cpuid_entry2> e{leaf(0xb, 0), leaf(0xb, 1), leaf(0xb, 2), leaf(0x1f, 0), leaf(4, 0)};
  e[4].eax = 0x121;  // some cache descriptor
  patch_cpuid(e, {5, 6, false});
  for (const auto& x : e) {
    if (x.function == 0xb || x.function == 0x1f) CHECK(x.edx == 5);
  }
  CHECK(e[0].ecx == ((1u << 8) | 0));
  CHECK(e[0].ebx == 1);
  CHECK(e[1].ecx == ((2u << 8) | 1));
  CHECK(e[1].eax == 3);  // 6 CPUs need 3 bits
  CHECK(e[1].ebx == 6);
  CHECK(((e[2].ecx >> 8) & 0xff) == 0);  // enumeration ends
  CHECK((e[4].eax >> 26) == 5);
  CHECK((e[4].eax & 0x3ffffff) == 0x121);
  CHECK(find_cpuid(e, 0xb, 1) == &e[1]);
  CHECK(find_cpuid(e, 0x80000000) == nullptr);
}
