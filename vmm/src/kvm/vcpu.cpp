#include "pinless/vmm/kvm/vcpu.h"

#include <sys/mman.h>

#include <cstring>
#include <memory>

#include "pinless/base/log.h"
#include "pinless/vmm/kvm/boot_cpu.h"

namespace pinless::vmm {

Result<Vcpu> Vcpu::create(const Kvm& kvm, const Vm& vm, uint32_t id) {
  Sys& sys = kvm.sys();
  std::string ctx = "vCPU " + std::to_string(id);
  int fd = sys.ioctl_int(vm.fd(), KVM_CREATE_VCPU, id);
  if (fd < 0) return fail("KVM_CREATE_VCPU", -fd, ctx);
  UniqueFd vcpu_fd(sys, fd);
  int err = 0;
  size_t size = kvm.vcpu_mmap_size();
  void* p = sys.mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd.get(), 0, &err);
  if (p == MAP_FAILED) return fail("mmap", err, ctx + " kvm_run");
  return Vcpu(&sys, id, std::move(vcpu_fd), MappedMemory(sys, p, size));
}

Status Vcpu::set_cpuid(std::vector<kvm_cpuid_entry2> entries, uint32_t vcpu_count,
                       bool tsc_deadline) {
  patch_cpuid(entries, CpuTopology{id_, vcpu_count, tsc_deadline});
  size_t bytes = sizeof(kvm_cpuid2) + entries.size() * sizeof(kvm_cpuid_entry2);
  auto buf = std::make_unique<uint64_t[]>((bytes + 7) / 8);
  auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buf.get());
  std::memset(cpuid, 0, bytes);
  cpuid->nent = uint32_t(entries.size());
  std::memcpy(cpuid->entries, entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
  auto r = sys_ioctl(*sys_, fd(), KVM_SET_CPUID2, cpuid, "KVM_SET_CPUID2");
  if (!r) return std::unexpected(std::move(r.error()).within("vCPU " + std::to_string(id_)));
  return {};
}

Status Vcpu::set_msrs(std::span<const kvm_msr_entry> msrs) {
  size_t bytes = sizeof(kvm_msrs) + msrs.size() * sizeof(kvm_msr_entry);
  auto buf = std::make_unique<uint64_t[]>((bytes + 7) / 8);
  auto* m = reinterpret_cast<kvm_msrs*>(buf.get());
  std::memset(m, 0, bytes);
  m->nmsrs = uint32_t(msrs.size());
  std::memcpy(m->entries, msrs.data(), msrs.size() * sizeof(kvm_msr_entry));
  // KVM_SET_MSRS returns how many entries it set and stops at the first it rejects.
  int n = sys_->ioctl(fd(), KVM_SET_MSRS, m);
  if (n < 0) return fail("KVM_SET_MSRS", -n, "vCPU " + std::to_string(id_));
  if (size_t(n) != msrs.size()) {
    char ctx[64];
    std::snprintf(ctx, sizeof(ctx), "vCPU %u: MSR %#x", id_, msrs[size_t(n)].index);
    return fail("KVM_SET_MSRS", 0, ctx, "the host KVM rejected this MSR");
  }
  return {};
}

Status Vcpu::setup_lints() {
  kvm_lapic_state lapic{};
  PINLESS_TRY_VOID(sys_ioctl(*sys_, fd(), KVM_GET_LAPIC, &lapic, "KVM_GET_LAPIC"));
  boot_cpu::set_lints(lapic);
  PINLESS_TRY_VOID(sys_ioctl(*sys_, fd(), KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC"));
  return {};
}

Status Vcpu::setup_boot_cpu(Gpa entry, Gpa zero_page) {
  // Start from KVM's reset state so fields we do not set (LDT, APIC base) stay valid.
  kvm_sregs sregs{};
  PINLESS_TRY_VOID(sys_ioctl(*sys_, fd(), KVM_GET_SREGS, &sregs, "KVM_GET_SREGS"));
  boot_cpu::setup_long_mode(sregs);
  PINLESS_TRY_VOID(sys_ioctl(*sys_, fd(), KVM_SET_SREGS, &sregs, "KVM_SET_SREGS"));
  kvm_regs regs = boot_cpu::boot_regs(entry, zero_page);
  PINLESS_TRY_VOID(sys_ioctl(*sys_, fd(), KVM_SET_REGS, &regs, "KVM_SET_REGS"));
  kvm_fpu fpu = boot_cpu::boot_fpu();
  PINLESS_TRY_VOID(sys_ioctl(*sys_, fd(), KVM_SET_FPU, &fpu, "KVM_SET_FPU"));
  logger("kvm")->debug("vCPU {}: 64-bit entry at {:#x}, boot_params at {:#x}", id_,
                       entry.value(), zero_page.value());
  return {};
}

int Vcpu::run() { return sys_->ioctl_int(fd(), KVM_RUN, 0); }

void Vcpu::request_exit() {
  // kvm_run is shared with the kernel; a plain store could be kept in a register.
  __atomic_store_n(&run_struct()->immediate_exit, uint8_t{1}, __ATOMIC_SEQ_CST);
}

void Vcpu::clear_exit_request() { __atomic_store_n(&run_struct()->immediate_exit, uint8_t{0}, __ATOMIC_SEQ_CST); }

}  // namespace pinless::vmm
