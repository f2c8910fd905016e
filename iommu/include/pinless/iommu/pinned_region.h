// PinnedRegion: the static "pin" DMA policy for one guest RAM region. Before boot it
// optionally pre-populates the pages (MADV_POPULATE_WRITE split across threads, falling back
// to touching each page), then maps the region at IOVA = GPA with as few MAP calls as the
// kernel allows: one per piece left after clipping to the usable IOVA ranges (holes such as
// 0xfee00000-0xfeefffff are skipped, not mapped). Owns its DmaMappings (unmapped on
// destruction, also when a later piece fails) and its PinAccounting charge.
// Reports bytes and microseconds for the startup timeline. Thread-compatible; the backend
// and accounting must outlive it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "pinless/base/types.h"
#include "pinless/iommu/dma_mapping.h"
#include "pinless/iommu/pin_accounting.h"

namespace pinless::iommu {

struct PinnedRegionSpec {
  std::string name;
  Range<Gpa> gpa;
  Hva hva;
  Perm perm = Perm::kReadWrite;
  bool populate = true;
  unsigned populate_threads = 1;
};

// Pre-faults [hva, hva + size) writable. `madvise_fn` is the seam for tests (returns 0 or
// -errno); on EINVAL (kernel < 5.14) or any error it touches every page instead, reading and
// writing back one byte so existing contents (a loaded kernel image) survive.
using MadviseFn = std::function<int(void* addr, size_t len)>;
int madvise_populate_write(void* addr, size_t len);
struct PopulateResult {
  uint64_t bytes = 0;
  bool used_madvise = true;  // false if at least one chunk fell back to touching
};
PopulateResult populate_pages(Hva hva, uint64_t size, unsigned threads, uint64_t page_size = kPageSize,
                              const MadviseFn& madvise_fn = madvise_populate_write);

class PinnedRegion {
 public:
  // `allowed` = the backend's usable IOVA ranges. `accounting` may be null. Fails without
  // leaving anything mapped or charged.
  static Result<PinnedRegion> create(DmaBackend& backend, const PinnedRegionSpec& spec,
                                     const std::vector<Range<Iova>>& allowed, PinAccounting* accounting,
                                     const MadviseFn& madvise_fn = madvise_populate_write);

  PinnedRegion(PinnedRegion&& o) noexcept;
  PinnedRegion& operator=(PinnedRegion&&) = delete;
  PinnedRegion(const PinnedRegion&) = delete;
  ~PinnedRegion();

  const std::vector<DmaMapping>& mappings() const { return maps_; }
  uint64_t mapped_bytes() const { return bytes_; }
  uint64_t skipped_bytes() const { return skipped_; }   // in IOVA holes
  uint64_t populate_us() const { return populate_us_; }
  uint64_t map_us() const { return map_us_; }

 private:
  PinnedRegion() = default;
  std::vector<DmaMapping> maps_;
  PinAccounting* accounting_ = nullptr;
  uint64_t bytes_ = 0;
  uint64_t skipped_ = 0;
  uint64_t populate_us_ = 0;
  uint64_t map_us_ = 0;
};

}  // namespace pinless::iommu
