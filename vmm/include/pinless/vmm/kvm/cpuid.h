// Per-vCPU CPUID: KVM_GET_SUPPORTED_CPUID's answer patched with this vCPU's APIC ID and a
// flat topology (one socket, one thread per core, `count` cores). Pure functions.
#pragma once

#include "pinless/base/linux_kvm.h"

#include <cstdint>
#include <vector>

namespace pinless::vmm {

struct CpuTopology {
  uint32_t apic_id = 0;  // == vCPU index
  uint32_t count = 1;    // vCPUs in the VM
  bool tsc_deadline = false;  // host has KVM_CAP_TSC_DEADLINE_TIMER
};

// Patches, in place:
//  - leaf 0x1: EBX[31:24] initial APIC ID, EBX[23:16] logical processors, EDX.HTT when count
//    > 1, ECX[31] hypervisor, ECX[24] TSC-deadline when the host supports it;
//  - leaf 0x4: EAX[31:26] cores per package - 1;
//  - leaves 0xB and 0x1F: x2APIC ID in EDX of every subleaf, level 0 = SMT (1 thread),
//    level 1 = core (count cores), higher subleaves invalid.
void patch_cpuid(std::vector<kvm_cpuid_entry2>& entries, const CpuTopology& topo);

// The entry for (function, index), or nullptr.
const kvm_cpuid_entry2* find_cpuid(const std::vector<kvm_cpuid_entry2>& entries,
                                   uint32_t function, uint32_t index = 0);

}  // namespace pinless::vmm
