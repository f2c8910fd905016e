// Premap window math for fault-driven DMA: given a faulting page of a guest RAM region,
// which pages to map along with it. Pure functions; thread-safe.
//   forward: N pages starting at the fault page, clipped to the region end
//   aligned: the naturally aligned N-page block (in IOVA space) holding the fault page,
//            clipped to the region; with N*page a huge-page size the IOMMU can use a large IOPTE
//   hint:    the fault record's length (bytes from the fault address) when non-zero, capped at
//            FaultPolicy::max_hint_pages; a zero length (what kernels send today) falls back to forward
#pragma once

#include <cstdint>

#include "pinless/iommu/dma_policy.h"

namespace pinless::iommu {

struct WindowParams {
  FaultPolicy fault_policy;   // N = premap_pages, the placement, the hint cap
  uint64_t page_size = 4096;  // power of two
};

// Pages [first, first + count) relative to the region start.
struct PageSpan {
  uint64_t first = 0;
  uint64_t count = 0;
  uint64_t end() const { return first + count; }
  bool operator==(const PageSpan&) const = default;
};

// region_base: the region's first IOVA (page aligned); region_pages: its size in pages;
// fault_page: page index of the fault inside the region (< region_pages); offset_in_page and
// hint_len come from the fault record. Always returns a span containing fault_page.
PageSpan compute_window(const WindowParams& p, uint64_t region_base, uint64_t region_pages, uint64_t fault_page,
                        uint64_t offset_in_page, uint32_t hint_len);

}  // namespace pinless::iommu
