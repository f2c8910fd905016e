#include "pinless/vmm/kvm/cpuid.h"

namespace pinless::vmm {
namespace {
constexpr uint32_t kLeaf1EcxTscDeadline = 1u << 24;
constexpr uint32_t kLeaf1EcxHypervisor = 1u << 31;
constexpr uint32_t kLeaf1EdxHtt = 1u << 28;
constexpr uint32_t kTopologyLevelSmt = 1;
constexpr uint32_t kTopologyLevelCore = 2;

// Bits needed to hold IDs 0..count-1 (the x2APIC ID shift of the core level).
uint32_t id_bits(uint32_t count) {
  uint32_t bits = 0;
  while ((1u << bits) < count) ++bits;
  return bits;
}
}  // namespace

void patch_cpuid(std::vector<kvm_cpuid_entry2>& entries, const CpuTopology& topo) {
  for (auto& e : entries) {
    switch (e.function) {
      case 0x1:
        e.ebx = (e.ebx & 0x0000ffffu) | ((topo.apic_id & 0xffu) << 24) |
                ((topo.count & 0xffu) << 16);
        e.ecx |= kLeaf1EcxHypervisor;
        if (topo.tsc_deadline) e.ecx |= kLeaf1EcxTscDeadline;
        if (topo.count > 1) {
          e.edx |= kLeaf1EdxHtt;
        } else {
          e.edx &= ~kLeaf1EdxHtt;
        }
        break;
      case 0x4:
        // Only meaningful while EAX[4:0] (cache type) is non-zero, harmless otherwise.
        e.eax = (e.eax & 0x03ffffffu) | (((topo.count - 1) & 0x3fu) << 26);
        break;
      case 0xb:
      case 0x1f:
        e.edx = topo.apic_id;
        if (e.index == 0) {
          e.eax = 0;  // no SMT: the core ID is the x2APIC ID shifted by 0
          e.ebx = 1;
          e.ecx = (kTopologyLevelSmt << 8) | 0;
        } else if (e.index == 1) {
          e.eax = id_bits(topo.count);
          e.ebx = topo.count;
          e.ecx = (kTopologyLevelCore << 8) | 1;
        } else {
          e.eax = 0;
          e.ebx = 0;
          e.ecx = e.index & 0xffu;  // level type 0: invalid, enumeration ends
        }
        break;
      default:
        break;
    }
  }
}

const kvm_cpuid_entry2* find_cpuid(const std::vector<kvm_cpuid_entry2>& entries,
                                   uint32_t function, uint32_t index) {
  for (const auto& e : entries) {
    bool indexed = (e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) != 0;
    if (e.function == function && (!indexed || e.index == index)) return &e;
  }
  return nullptr;
}

}  // namespace pinless::vmm
