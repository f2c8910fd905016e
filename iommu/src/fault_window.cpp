#include "pinless/iommu/fault_window.h"

#include <algorithm>

namespace pinless::iommu {

namespace {
PageSpan forward(uint64_t region_pages, uint64_t fault_page, uint64_t n) {
  return {fault_page, std::min(n, region_pages - fault_page)};
}
}  // namespace

PageSpan compute_window(const WindowParams& p, uint64_t region_base, uint64_t region_pages, uint64_t fault_page,
                        uint64_t offset_in_page, uint32_t hint_len) {
  const FaultPolicy& f = p.fault_policy;
  uint64_t n = std::max<uint64_t>(f.premap_pages, 1);
  switch (f.window) {
    case WindowPolicy::kForward:
      return forward(region_pages, fault_page, n);
    case WindowPolicy::kAligned: {
      // Align in absolute IOVA pages so that the block matches IOMMU large-page boundaries
      // even when the region itself does not start on one.
      uint64_t base_page = region_base / p.page_size;
      uint64_t abs = base_page + fault_page;
      uint64_t block = abs - abs % n;
      uint64_t first = std::max(block, base_page) - base_page;
      uint64_t end = std::min(block + n - base_page, region_pages);
      return {first, end - first};
    }
    case WindowPolicy::kHint: {
      if (hint_len == 0) return forward(region_pages, fault_page, n);
      uint64_t pages = (offset_in_page + hint_len + p.page_size - 1) / p.page_size;
      return forward(region_pages, fault_page, std::clamp<uint64_t>(pages, 1, std::max<uint64_t>(f.max_hint_pages, 1)));
    }
  }
  return {fault_page, 1};
}

}  // namespace pinless::iommu
