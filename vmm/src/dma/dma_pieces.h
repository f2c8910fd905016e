// Splitting guest RAM into DMA pieces: each guest RAM region (split around the PCI hole) cut
// at the --ram-region boundaries, with the policy of the region that covers it (dma=pin where
// none does). Pure function, unit-tested. IOVA = GPA throughout.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "pinless/base/types.h"
#include "pinless/iommu/fault_window.h"
#include "pinless/vmm/cli/dma_config.h"
#include "pinless/vmm/memory/guest_memory.h"

namespace pinless::vmm {

struct DmaPiece {
  Range<Gpa> gpa;
  Hva hva;
  uint64_t ram_offset = 0;  // RAM byte of gpa.start, as --memory and --ram-region count
  bool fault = false;
  iommu::FaultPolicy fault_policy;
};

// `ram`: the guest RAM regions in GPA order. The result is in GPA order and covers all RAM.
std::vector<DmaPiece> plan_dma_pieces(std::span<const MemoryRegion> ram, const DmaConfig& cfg);

}  // namespace pinless::vmm
