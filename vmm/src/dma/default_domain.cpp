#include "default_domain.h"

#include <algorithm>

namespace pinless::vmm {

iommu::DmaPolicy dma_domain_policy(std::span<const MemoryRegion> ram, const DmaConfig& cfg) {
  iommu::DmaPolicy out;
  out.fallback_pin = cfg.fallback_pin;
  out.pin_limit = cfg.pin_limit;
  out.reclaim = cfg.reclaim;
  uint64_t base = 0;  // RAM offset of the current region's start
  for (const auto& region : ram) {
    const uint64_t end = base + region.gpa.size;
    uint64_t at = base;
    auto emit = [&](uint64_t from, uint64_t to, const RamRegionConfig* rc) {
      if (from >= to) return;
      iommu::DmaRegion r;
      r.gpa = Gpa(region.gpa.start.value() + (from - base));
      r.iova = {Iova(r.gpa.value()), to - from};  // IOVA = GPA
      r.hva = region.hva() + (from - base);
      r.name = "ram";
      r.offset = from;
      if (rc != nullptr) {
        r.fault = rc->fault;
        r.fault_policy = rc->fault_policy;
      }
      out.regions.push_back(r);
    };
    for (const auto& rc : cfg.regions) {  // sorted, disjoint (check_ram_regions)
      uint64_t from = std::max(rc.offset, at), to = std::min(rc.end(), end);
      if (from >= to) continue;
      emit(at, from, nullptr);  // RAM before it that no --ram-region names: pin
      emit(from, to, &rc);
      at = to;
    }
    emit(at, end, nullptr);
    base = end;
  }
  return out;
}

}  // namespace pinless::vmm
