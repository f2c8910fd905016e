#include <doctest/doctest.h>
#include "pinless/base/linux_kvm.h"

#include <cstring>
#include <set>
#include <vector>

#include "fakes/fake_sys.h"
#include "pinless/vmm/kvm/boot_cpu.h"
#include "pinless/vmm/kvm/kvm.h"
#include "pinless/vmm/kvm/vcpu.h"
#include "pinless/vmm/kvm/vm.h"
#include "pinless/vmm/layout.h"

using namespace pinless;
using namespace pinless::vmm;
using pinless::testing::FakeSys;

namespace {
// A host KVM with every capability, scripted on FakeSys.
struct FakeKvm {
  FakeSys sys;
  std::set<unsigned long> missing_caps;
  int api = 12;
  int max_vcpus = 288;

  FakeKvm() {
    sys.on_open("/dev/kvm");
    sys.on_ioctl(KVM_GET_API_VERSION, [this](int, unsigned long, void*) { return api; });
    sys.on_ioctl(KVM_CHECK_EXTENSION, [this](int, unsigned long, void* arg) {
      auto cap = reinterpret_cast<unsigned long>(arg);
      if (missing_caps.count(cap)) return 0;
      return cap == KVM_CAP_MAX_VCPUS ? max_vcpus : 1;
    });
    sys.on_ioctl(KVM_GET_VCPU_MMAP_SIZE, [](int, unsigned long, void*) { return 3 * 4096; });
    sys.on_ioctl(KVM_CREATE_VM, [this](int, unsigned long, void*) { return sys.new_fd(); });
    for (unsigned long req : std::initializer_list<unsigned long>{KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR, KVM_CREATE_IRQCHIP,
                              KVM_CREATE_PIT2, KVM_SET_USER_MEMORY_REGION, KVM_IRQ_LINE, KVM_IRQFD}) {
      sys.on_ioctl(req, [](int, unsigned long, void*) { return 0; });
    }
    sys.on_ioctl(KVM_CREATE_VCPU, [this](int, unsigned long, void*) { return sys.new_fd(); });
  }
};
}  // namespace

TEST_CASE("no /dev/kvm: the error tells the user to use the testbed") {
  FakeSys sys;
  auto kvm = Kvm::open(sys);
  REQUIRE_FALSE(kvm);
  CHECK(kvm.error().message() ==
        "no /dev/kvm: this host has no KVM; run pinless inside the testbed: "
        "scripts/testbed run -- build/pinless run ...");
}

TEST_CASE("Kvm checks the API version") {
  FakeKvm f;
  f.api = 11;
  auto kvm = Kvm::open(f.sys);
  REQUIRE_FALSE(kvm);
  CHECK(kvm.error().message().find("expected 12") != std::string::npos);
}

TEST_CASE("Kvm names the missing capability") {
  FakeKvm f;
  f.missing_caps = {KVM_CAP_IRQFD};
  auto kvm = Kvm::open(f.sys);
  REQUIRE_FALSE(kvm);
  CHECK(kvm.error().message().find("KVM_CAP_IRQFD") != std::string::npos);
}

TEST_CASE("Kvm reads limits; max vCPUs falls back to KVM_CAP_NR_VCPUS") {
  FakeKvm f;
  auto kvm = Kvm::open(f.sys);
  REQUIRE(kvm);
  CHECK(kvm->max_vcpus() == 288);
  CHECK(kvm->vcpu_mmap_size() == 3 * 4096);
  f.max_vcpus = 0;
  auto kvm2 = Kvm::open(f.sys);
  REQUIRE(kvm2);
  CHECK(kvm2->max_vcpus() == 1);  // the fake answers 1 for KVM_CAP_NR_VCPUS
}

TEST_CASE("Kvm retries KVM_GET_SUPPORTED_CPUID on E2BIG") {
  FakeKvm f;
  f.sys.on_ioctl(KVM_GET_SUPPORTED_CPUID, [](int, unsigned long, void* arg) {
    auto* c = static_cast<kvm_cpuid2*>(arg);
    if (c->nent < 300) return -E2BIG;
    c->nent = 2;
    c->entries[0].function = 0;
    c->entries[1].function = 1;
    return 0;
  });
  auto kvm = Kvm::open(f.sys);
  REQUIRE(kvm);
  auto cpuid = kvm->supported_cpuid();
  REQUIRE(cpuid);
  CHECK(cpuid->size() == 2);
  CHECK(f.sys.count(KVM_GET_SUPPORTED_CPUID) == 2);
}

TEST_CASE("Vm::create sets up the platform in the order KVM requires") {
  FakeKvm f;
  uint64_t identity = 0;
  unsigned long tss = 0;
  uint32_t pit_flags = 99;
  f.sys.on_ioctl(KVM_SET_TSS_ADDR, [&](int, unsigned long, void* a) { tss = reinterpret_cast<unsigned long>(a); return 0; });
  f.sys.on_ioctl(KVM_SET_IDENTITY_MAP_ADDR, [&](int, unsigned long, void* a) { identity = *static_cast<uint64_t*>(a); return 0; });
  f.sys.on_ioctl(KVM_CREATE_PIT2, [&](int, unsigned long, void* a) { pit_flags = static_cast<kvm_pit_config*>(a)->flags; return 0; });
  auto kvm = Kvm::open(f.sys);
  REQUIRE(kvm);
  auto vm = Vm::create(*kvm);
  REQUIRE(vm);
  CHECK(tss == 0xfffbd000);
  CHECK(identity == 0xfffbc000);
  CHECK(pit_flags == 0);
  std::vector<unsigned long> order;
  for (const auto& c : f.sys.calls()) {
    if (c.what == "ioctl" && c.fd == vm->fd()) order.push_back(c.request);
  }
  CHECK(order == std::vector<unsigned long>{KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR,
                                            KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2});
}

TEST_CASE("Vm::create reports the failing step") {
  FakeKvm f;
  f.sys.on_ioctl(KVM_CREATE_IRQCHIP, [](int, unsigned long, void*) { return -EEXIST; });
  auto kvm = Kvm::open(f.sys);
  REQUIRE(kvm);
  auto vm = Vm::create(*kvm);
  REQUIRE_FALSE(vm);
  CHECK(vm.error().op() == "KVM_CREATE_IRQCHIP");
  CHECK(vm.error().err() == EEXIST);
}

TEST_CASE("Vm maps each RAM region as one memslot and drives IRQ lines") {
  FakeKvm f;
  std::vector<kvm_userspace_memory_region> slots;
  f.sys.on_ioctl(KVM_SET_USER_MEMORY_REGION, [&](int, unsigned long, void* a) {
    slots.push_back(*static_cast<kvm_userspace_memory_region*>(a));
    return 0;
  });
  kvm_irq_level irq{};
  f.sys.on_ioctl(KVM_IRQ_LINE, [&](int, unsigned long, void* a) { irq = *static_cast<kvm_irq_level*>(a); return 0; });
  kvm_irqfd irqfd{};
  f.sys.on_ioctl(KVM_IRQFD, [&](int, unsigned long, void* a) { irqfd = *static_cast<kvm_irqfd*>(a); return 0; });
  auto kvm = Kvm::open(f.sys);
  auto vm = Vm::create(*kvm);
  REQUIRE(vm);
  auto mem = GuestMemory::create(f.sys, {3 * kGiB + 2 * kMiB, false, false});
  REQUIRE(mem);
  REQUIRE(vm->map_guest_memory(*mem));
  REQUIRE(slots.size() == 2);
  CHECK(slots[0].slot == 0);
  CHECK(slots[0].guest_phys_addr == 0);
  CHECK(slots[0].memory_size == 3 * kGiB);
  CHECK(slots[0].userspace_addr == mem->regions()[0].hva().value());
  CHECK(slots[1].slot == 1);
  CHECK(slots[1].guest_phys_addr == 4 * kGiB);
  CHECK(slots[1].memory_size == 2 * kMiB);

  REQUIRE(vm->set_irq_line(4, true));
  CHECK(irq.irq == 4);
  CHECK(irq.level == 1);
  REQUIRE(vm->add_irqfd(17, 5, 18));
  CHECK(irqfd.fd == 17);
  CHECK(irqfd.gsi == 5);
  CHECK(irqfd.flags == KVM_IRQFD_FLAG_RESAMPLE);
  CHECK(irqfd.resamplefd == 18);
  REQUIRE(vm->remove_irqfd(17, 5));
  CHECK(irqfd.flags == KVM_IRQFD_FLAG_DEASSIGN);
}

TEST_CASE("Vcpu: create maps kvm_run; boot CPU gets long mode, APs get only CPUID/MSRs/LINTs") {
  FakeKvm f;
  std::vector<unsigned long> vcpu_ids;
  f.sys.on_ioctl(KVM_CREATE_VCPU, [&](int, unsigned long, void* a) {
    vcpu_ids.push_back(reinterpret_cast<unsigned long>(a));
    return f.sys.new_fd();
  });
  kvm_sregs sregs{};
  kvm_regs regs{};
  kvm_lapic_state lapic{};
  std::vector<kvm_cpuid_entry2> set_cpuid;
  f.sys.on_ioctl(KVM_GET_SREGS, [](int, unsigned long, void* a) {
    auto* s = static_cast<kvm_sregs*>(a);
    s->cr0 = 0x60000010;  // reset value
    return 0;
  });
  f.sys.on_ioctl(KVM_SET_SREGS, [&](int, unsigned long, void* a) { sregs = *static_cast<kvm_sregs*>(a); return 0; });
  f.sys.on_ioctl(KVM_SET_REGS, [&](int, unsigned long, void* a) { regs = *static_cast<kvm_regs*>(a); return 0; });
  f.sys.on_ioctl(KVM_SET_FPU, [](int, unsigned long, void*) { return 0; });
  f.sys.on_ioctl(KVM_GET_LAPIC, [](int, unsigned long, void* a) {
    auto* l = static_cast<kvm_lapic_state*>(a);
    uint32_t masked = 0x10000;
    std::memcpy(l->regs + 0x350, &masked, 4);
    std::memcpy(l->regs + 0x360, &masked, 4);
    return 0;
  });
  f.sys.on_ioctl(KVM_SET_LAPIC, [&](int, unsigned long, void* a) { lapic = *static_cast<kvm_lapic_state*>(a); return 0; });
  f.sys.on_ioctl(KVM_SET_CPUID2, [&](int, unsigned long, void* a) {
    auto* c = static_cast<kvm_cpuid2*>(a);
    set_cpuid.assign(c->entries, c->entries + c->nent);
    return 0;
  });
  f.sys.on_ioctl(KVM_SET_MSRS, [](int, unsigned long, void* a) { return int(static_cast<kvm_msrs*>(a)->nmsrs); });

  auto kvm = Kvm::open(f.sys);
  auto vm = Vm::create(*kvm);
  REQUIRE(vm);
  {
    auto v1 = Vcpu::create(*kvm, *vm, 1);
    REQUIRE(v1);
    CHECK(v1->run_size() == 3 * 4096);
    CHECK(f.sys.live_mappings() == 1);
    kvm_cpuid_entry2 leaf1{};
    leaf1.function = 1;
    REQUIRE(v1->set_cpuid({leaf1}, 2, false));
    REQUIRE(set_cpuid.size() == 1);
    CHECK((set_cpuid[0].ebx >> 24) == 1);
    REQUIRE(v1->set_msrs(boot_cpu::boot_msrs()));
    REQUIRE(v1->setup_lints());
    CHECK(((boot_cpu::lapic_reg(lapic, 0x350) >> 8) & 7) == 7);  // ExtINT
    CHECK(((boot_cpu::lapic_reg(lapic, 0x360) >> 8) & 7) == 4);  // NMI
    CHECK(f.sys.count(KVM_SET_REGS) == 0);
  }
  CHECK(f.sys.live_mappings() == 0);

  auto v0 = Vcpu::create(*kvm, *vm, 0);
  REQUIRE(v0);
  REQUIRE(v0->setup_boot_cpu(Gpa(0x100200), layout::kZeroPage));
  CHECK(vcpu_ids == std::vector<unsigned long>{1, 0});
  CHECK(regs.rip == 0x100200);
  CHECK(regs.rsi == 0x7000);
  CHECK(regs.rflags == 0x2);
  CHECK((sregs.cr0 & 0x80000001) == 0x80000001);
  CHECK((sregs.cr4 & 0x20) == 0x20);
  CHECK((sregs.efer & 0x500) == 0x500);
  CHECK(sregs.cr3 == 0x9000);
  CHECK(sregs.cs.selector == 0x10);
  CHECK(sregs.cs.l == 1);
  CHECK(sregs.ds.selector == 0x18);
  CHECK(sregs.gdt.base == 0x500);
}

TEST_CASE("Vcpu::set_msrs names the MSR the kernel refused") {
  FakeKvm f;
  f.sys.on_ioctl(KVM_SET_MSRS, [](int, unsigned long, void*) { return 2; });
  auto kvm = Kvm::open(f.sys);
  auto vm = Vm::create(*kvm);
  auto v = Vcpu::create(*kvm, *vm, 0);
  REQUIRE(v);
  auto msrs = boot_cpu::boot_msrs();
  auto r = v->set_msrs(msrs);
  REQUIRE_FALSE(r);
  char want[16];
  std::snprintf(want, sizeof(want), "%#x", msrs[2].index);
  CHECK(r.error().message().find(want) != std::string::npos);
}

TEST_CASE("Vcpu::request_exit sets immediate_exit") {
  FakeKvm f;
  auto kvm = Kvm::open(f.sys);
  auto vm = Vm::create(*kvm);
  auto v = Vcpu::create(*kvm, *vm, 0);
  REQUIRE(v);
  CHECK(v->run_struct()->immediate_exit == 0);
  v->request_exit();
  CHECK(v->run_struct()->immediate_exit == 1);
}

TEST_CASE("Kvm, Vm and Vcpu close their fds and unmap kvm_run through the Sys they came from") {
  FakeKvm f;
  int kvm_fd = -1, vm_fd = -1, vcpu_fd = -1;
  {
    auto kvm = Kvm::open(f.sys);
    REQUIRE(kvm);
    auto vm = Vm::create(*kvm);
    REQUIRE(vm);
    auto vcpu = Vcpu::create(*kvm, *vm, 0);
    REQUIRE(vcpu);
    kvm_fd = kvm->fd();
    vm_fd = vm->fd();
    vcpu_fd = vcpu->fd();
    CHECK(f.sys.open_fds() == 3);
    CHECK(f.sys.live_mappings() == 1);
  }
  // A close that bypasses the Sys never reaches the fake, and with the real kernel would hit
  // whatever unrelated fd happens to carry that number.
  CHECK(f.sys.open_fds() == 0);
  CHECK(f.sys.live_mappings() == 0);
  std::vector<int> closed;
  for (const auto& c : f.sys.calls()) {
    if (c.what == "close") closed.push_back(c.fd);
  }
  CHECK(closed == std::vector<int>{vcpu_fd, vm_fd, kvm_fd});  // reverse order of creation
}
