#include "dma_pieces.h"

#include <algorithm>

namespace pinless::vmm {

std::vector<DmaPiece> plan_dma_pieces(std::span<const MemoryRegion> ram, const DmaConfig& cfg) {
  std::vector<DmaPiece> out;
  uint64_t base = 0;  // RAM offset of the current region's start
  for (const auto& region : ram) {
    const uint64_t end = base + region.gpa.size;
    uint64_t at = base;
    auto emit = [&](uint64_t from, uint64_t to, const RamRegionConfig* rc) {
      if (from >= to) return;
      DmaPiece p;
      p.gpa = {Gpa(region.gpa.start.value() + (from - base)), to - from};
      p.hva = region.hva() + (from - base);
      p.ram_offset = from;
      if (rc != nullptr) {
        p.fault = rc->fault;
        p.fault_policy = rc->fault_policy;
      }
      out.push_back(p);
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
