// Vcpu: one KVM vCPU fd and its mmap()ed kvm_run. Configures CPUID, MSRs, LAPIC LINTs for
// every vCPU and the 64-bit boot registers for vCPU 0 (application processors keep KVM's
// reset state and wait for INIT/SIPI from the boot CPU, which the in-kernel LAPIC handles).
// Owns the fd and the mapping. vCPU thread only, except request_exit(), which any thread may
// call to make the next or current KVM_RUN return.
#pragma once

#include "pinless/base/linux_kvm.h"

#include <cstdint>
#include <span>
#include <vector>

#include "pinless/base/fd.h"
#include "pinless/base/result.h"
#include "pinless/base/sys.h"
#include "pinless/base/types.h"
#include "pinless/vmm/kvm/cpuid.h"
#include "pinless/vmm/kvm/kvm.h"
#include "pinless/vmm/kvm/vm.h"

namespace pinless::vmm {

class Vcpu {
 public:
  [[nodiscard]] static Result<Vcpu> create(const Kvm& kvm, const Vm& vm, uint32_t id);
  Vcpu(Vcpu&& o) noexcept = default;
  Vcpu& operator=(Vcpu&&) = delete;

  uint32_t id() const { return id_; }
  int fd() const { return fd_.get(); }
  kvm_run* run_struct() const { return static_cast<kvm_run*>(run_.get()); }
  size_t run_size() const { return run_.size(); }

  // KVM_SET_CPUID2 with `supported` patched for this vCPU (see cpuid.h).
  [[nodiscard]] Status set_cpuid(std::vector<kvm_cpuid_entry2> supported, uint32_t vcpu_count,
                                 bool tsc_deadline);
  // KVM_SET_MSRS; fails unless the kernel set every entry.
  [[nodiscard]] Status set_msrs(std::span<const kvm_msr_entry> msrs);
  // KVM_GET_LAPIC / KVM_SET_LAPIC with LINT0 = ExtINT, LINT1 = NMI.
  [[nodiscard]] Status setup_lints();
  // vCPU 0 only: long mode, flat segments, regs for the 64-bit entry (page tables and GDT
  // must already be in guest memory, see boot_cpu.h).
  [[nodiscard]] Status setup_boot_cpu(Gpa entry, Gpa zero_page);

  // KVM_RUN: 0, or -errno (-EINTR when kicked by a signal or immediate_exit).
  int run();
  // Makes KVM_RUN return -EINTR now (if the caller also signals the thread) or on the next
  // entry. Thread-safe.
  void request_exit();
  // Undoes request_exit() (vCPU thread, after KVM_RUN returned -EINTR), so a kick that only
  // meant "look up" (a pause) does not make every later KVM_RUN return at once.
  void clear_exit_request();

 private:
  Vcpu(Sys* sys, uint32_t id, UniqueFd fd, MappedMemory run)
      : sys_(sys), id_(id), fd_(std::move(fd)), run_(std::move(run)) {}

  Sys* sys_;
  uint32_t id_;
  UniqueFd fd_;
  MappedMemory run_;  // the vCPU's kvm_run; unmapped before fd_ closes (declared after it)
};

}  // namespace pinless::vmm
