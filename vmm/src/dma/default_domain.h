// The VM's default DMA domain: all guest RAM at IOVA = GPA. Each guest RAM region (split
// around the PCI hole) is cut at the --ram-region boundaries and takes the policy of the
// region that covers it (dma=pin where none does). Pure function, unit-tested; the DMA
// policy itself (what pin and fault mean) lives in iommu::DmaDomain.
#pragma once

#include <span>

#include "pinless/iommu/dma_policy.h"
#include "pinless/vmm/cli/dma_config.h"
#include "pinless/vmm/memory/guest_memory.h"

namespace pinless::vmm {

// `ram`: the guest RAM regions in GPA order. The regions of the result are in GPA order and
// cover all RAM; each is named "ram" with its offset counted as --memory and --ram-region
// count RAM bytes.
iommu::DmaPolicy dma_domain_policy(std::span<const MemoryRegion> ram, const DmaConfig& cfg);

}  // namespace pinless::vmm
