// PinnedRegion: the static "pin" DMA policy for one guest RAM region. Before boot it
// optionally pre-populates the pages in parallel (populate.h: MADV_POPULATE_WRITE, one slice
// per thread; skipped when only one thread would do it, since the MAP populates anyway),
// then maps the region at IOVA = GPA with as few MAP calls as the kernel allows: one per
// piece left after clipping to the usable IOVA ranges (holes such as 0xfee00000-0xfeefffff
// are skipped, not mapped). Owns its DmaMappings (unmapped on destruction, also when a later
// piece fails) and its PinAccounting charge.
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
#include "pinless/iommu/populate.h"

namespace pinless::iommu {

struct PinnedRegionSpec {
  std::string name;
  Range<Gpa> gpa;
  Hva hva;
  Perm perm = Perm::kReadWrite;
  // false: never pre-populate (the MAP faults the pages in, single-threaded, in the kernel).
  bool populate = true;
  // 0 = automatic: min(CPUs we may run on, size / populate_min_chunk) threads, and no
  // separate pass when that is below 2. N > 0: always pre-populate with N threads (N = 1 is
  // what pinless did before the parallel path; kept for benchmarks).
  unsigned populate_threads = 0;
  uint64_t populate_min_chunk = kPopulateMinChunk;
};

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
  unsigned populate_threads() const { return populate_threads_; }  // 0: no separate pass
  size_t map_calls() const { return maps_.size(); }

 private:
  PinnedRegion() = default;
  std::vector<DmaMapping> maps_;
  PinAccounting* accounting_ = nullptr;
  uint64_t bytes_ = 0;
  uint64_t skipped_ = 0;
  uint64_t populate_us_ = 0;
  uint64_t map_us_ = 0;
  unsigned populate_threads_ = 0;
};

}  // namespace pinless::iommu
