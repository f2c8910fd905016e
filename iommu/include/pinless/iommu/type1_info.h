// Parsing of VFIO_IOMMU_GET_INFO results (struct vfio_iommu_type1_info plus its capability
// chain: IOVA ranges, DMA mappings available, migration). The buffer comes from the kernel,
// but it is parsed defensively anyway: offsets out of bounds, chains that loop or run
// backwards, and counts larger than the buffer are errors, never reads past the end.
// Pure functions over bytes; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "pinless/base/result.h"
#include "pinless/base/types.h"

namespace pinless::iommu {

struct Type1Info {
  uint64_t page_sizes = 0;                   // bitmap of IOMMU page sizes (VFIO_IOMMU_INFO_PGSIZES)
  std::vector<Range<Iova>> iova_ranges;      // empty if the kernel reported no IOVA range cap
  bool have_iova_ranges = false;
  std::optional<uint32_t> dma_avail;         // mappings still allowed (dma_entry_limit), if reported
  bool migration_cap = false;
  uint32_t needed_argsz = 0;                 // argsz the kernel asked for (> buffer: call again)
};

// Parses `buf` as returned by VFIO_IOMMU_GET_INFO. If the kernel's argsz exceeds the
// buffer, needed_argsz is set and the chain is not parsed (call again with a bigger buffer).
Result<Type1Info> parse_type1_info(std::span<const uint8_t> buf);

// The smallest page size in the bitmap (0 if empty).
uint64_t min_page_size(uint64_t page_sizes);

}  // namespace pinless::iommu
