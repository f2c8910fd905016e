#include "pinless/iommu/dma_mapping.h"

#include <algorithm>

#include "pinless/base/log.h"

namespace pinless::iommu {

const char* perm_name(Perm p) {
  switch (p) {
    case Perm::kRead: return "r";
    case Perm::kWrite: return "w";
    case Perm::kReadWrite: return "rw";
  }
  return "?";
}

const char* backend_name(BackendKind k) { return k == BackendKind::kIommufd ? "iommufd" : "type1"; }

std::vector<Range<Iova>> clip_to_ranges(Range<Iova> want, const std::vector<Range<Iova>>& allowed) {
  std::vector<Range<Iova>> out;
  for (const auto& a : allowed) {
    if (!a.overlaps(want)) continue;
    Iova s = std::max(a.start, want.start);
    // Compare ends as "last byte" so a range reaching 2^64 cannot overflow.
    uint64_t last = std::min(a.start.value() + (a.size - 1), want.start.value() + (want.size - 1));
    out.push_back({s, last - s.value() + 1});
  }
  std::sort(out.begin(), out.end(), [](const auto& x, const auto& y) { return x.start < y.start; });
  return out;
}

Result<DmaMapping> DmaMapping::create(DmaBackend& backend, Iova iova, Hva hva, uint64_t size, Perm perm) {
  PINLESS_TRY_VOID(backend.map(iova, hva, size, perm));
  return DmaMapping(backend, iova, size);
}

Status DmaMapping::release() {
  if (backend_ == nullptr) return {};
  DmaBackend* b = std::exchange(backend_, nullptr);
  uint64_t size = std::exchange(size_, 0);
  return b->unmap(iova_, size);
}

void DmaMapping::reset() {
  auto st = release();
  if (!st) logger("iommu")->error("unmap on teardown failed: {}", st.error().message());
}

}  // namespace pinless::iommu
