// FaultEngine: the policy half of fault-driven DMA. It knows the faultable guest RAM regions
// (IOVA = GPA), which pages of each are mapped (one bit per page), which mapped windows are
// cold, and the pin budget. Given a batch of fault records (whole groups, as one read() of
// the iommufd fault queue returns them) it plans: which windows to unmap to make room
// (reclaim, least recently faulted first), which unmapped sub-runs to map (coalesced across
// the batch, never a page twice), and one response per group. It makes no syscalls: the
// FaultQueue executes the plan through a DmaBackend and reports failures back.
// Fault records are device (= guest) input: anything outside a region or asking for more than
// the region allows is answered INVALID with a rate-limited warning, never trusted.
// Thread-compatible: the event-loop thread owns it. PinAccounting must outlive it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pinless/base/log.h"
#include "pinless/base/result.h"
#include "pinless/base/types.h"
#include "pinless/iommu/dma_backend.h"
#include "pinless/iommu/fault_window.h"
#include "pinless/iommu/page_bitmap.h"
#include "pinless/iommu/pin_accounting.h"
#include "pinless/iommu/window_table.h"

namespace pinless::iommu {

struct FaultRegionSpec {
  std::string name;                 // for messages ("ram-low", "ram-high")
  Range<Gpa> gpa;                   // mapped at IOVA = GPA
  Hva hva;                          // host address of gpa.start
  uint64_t page_size = kPageSize;   // backing page size (4K, 2M hugetlb, ...)
  FaultPolicy fault_policy;         // premap window size N, placement, hint cap
  Perm perm = Perm::kReadWrite;
};

// One iommu_hwpt_pgfault record, with a typed address. Flag and perm bits have the uAPI values.
struct FaultRecord {
  static constexpr uint32_t kPasidValid = 1u << 0;
  static constexpr uint32_t kLastPage = 1u << 1;
  static constexpr uint32_t kPermRead = 1u << 0;
  static constexpr uint32_t kPermWrite = 1u << 1;
  static constexpr uint32_t kPermExec = 1u << 2;
  static constexpr uint32_t kPermPriv = 1u << 3;

  uint32_t flags = 0;
  uint32_t dev_id = 0;
  uint32_t pasid = 0;
  uint32_t grpid = 0;
  uint32_t perm = 0;
  Iova addr;
  uint32_t length = 0;
  uint32_t cookie = 0;
  bool last() const { return flags & kLastPage; }
};

enum class FaultCode : uint32_t { kSuccess = 0, kInvalid = 1 };  // uAPI page response codes

// A MAP or UNMAP to execute: pages [first_page, first_page + pages) of region `region`.
struct DmaRun {
  uint32_t region = 0;
  uint64_t first_page = 0;
  uint64_t pages = 0;
  Iova iova;
  Hva hva;
  uint64_t size = 0;
  Perm perm = Perm::kReadWrite;
};

struct GroupResponse {
  uint32_t cookie = 0;
  FaultCode code = FaultCode::kSuccess;
};

// What to do for one batch. Reused across batches (clear() keeps the capacity).
struct FaultPlan {
  std::vector<DmaRun> unmaps;  // reclaim: execute first
  std::vector<DmaRun> maps;    // coalesced, ascending within a region
  std::vector<GroupResponse> responses;  // one per group, in queue order
  // Internal: the fault pages each group needs mapped, checked again in finish().
  struct PageRef { uint32_t region; uint64_t page; };
  std::vector<PageRef> pages;
  std::vector<uint32_t> group_pages_end;  // per group: end index into pages
  void clear();
};

class FaultEngine {
 public:
  explicit FaultEngine(PinAccounting& accounting) : accounting_(accounting) {}

  // Adds a faultable region; returns its index. Regions must be page aligned and disjoint.
  Result<uint32_t> add_region(const FaultRegionSpec& spec);
  size_t region_count() const { return regions_.size(); }
  const FaultRegionSpec& region(uint32_t i) const { return regions_[i].spec; }
  const PageBitmap& mapped(uint32_t i) const { return regions_[i].bitmap; }
  // Reclaim (default off, as DmaPolicy::reclaim): at the pin limit, unmap the coldest
  // windows to make room. Off: a fault that does not fit under the limit is answered INVALID.
  void set_reclaim(bool on) { reclaim_ = on; }
  // Changes region `i`'s window policy (premap size, placement, hint cap) for faults planned
  // from now on; windows mapped already stay as they are. EINVAL for a bad policy or index.
  [[nodiscard]] Status set_policy(uint32_t i, const FaultPolicy& policy);
  // Region `i` is mapped whole by its owner (a switch to the pin policy at run time), or no
  // longer. While it is, a fault in it maps nothing and is answered SUCCESS: the page is
  // mapped, the device retries. Take the region's windows (take_windows) before pinning it.
  void set_pinned(uint32_t i, bool pinned);
  bool pinned(uint32_t i) const { return regions_[i].pinned; }

  // Plans one batch of records (whole groups: a group ends with a LAST_PAGE record or where
  // the cookie changes). Marks the planned pages mapped and charges them, optimistically.
  void plan(std::span<const FaultRecord> records, FaultPlan& out);
  // The FaultQueue reports a MAP of the plan that failed (pages become unmapped again) or
  // a reclaim UNMAP that failed (before executing the maps: the window stays mapped and
  // charged, and the plan's maps are trimmed off its pages and cut back under the pin limit).
  void map_failed(const DmaRun& run);
  void unmap_failed(const DmaRun& run, FaultPlan& plan);
  // Fills out.responses: a group is SUCCESS only if all its records were valid and every
  // fault page is mapped now.
  void finish(FaultPlan& out);

  // Unmaps everything the engine mapped (for teardown or a policy switch): returns the runs
  // to unmap and forgets them. take_windows: region `i`'s only.
  std::vector<DmaRun> take_all_windows();
  std::vector<DmaRun> take_windows(uint32_t i);
  // The FaultQueue (or the owner, for take_*windows) reports each MAP/UNMAP it executed, and
  // how long the call took, for the per-region counters.
  void note_map(const DmaRun& run, uint64_t ns) { regions_[run.region].stats.note(true, ns); }
  void note_unmap(const DmaRun& run, uint64_t ns) { regions_[run.region].stats.note(false, ns); }

  struct Stats {
    uint64_t records = 0, groups = 0, invalid_groups = 0;
    uint64_t maps = 0, pages_mapped = 0, map_failures = 0;
    uint64_t reclaims = 0, pages_reclaimed = 0, over_limit = 0;
    uint64_t already_mapped = 0;  // records whose page was mapped already (coalesced)
  };
  const Stats& stats() const { return stats_; }
  size_t window_count() const { return windows_.size(); }

  // Per region, cumulative: fault records that landed in it and those answered INVALID,
  // pages mapped by its faults, reclaims, and the MAP/UNMAP calls made for it with their
  // time (reported through note_map/note_unmap).
  struct RegionStats {
    uint64_t records = 0, invalid = 0, pages_mapped = 0, reclaims = 0, pages_reclaimed = 0;
    uint64_t map_calls = 0, map_ns = 0, unmap_calls = 0, unmap_ns = 0;
    void note(bool map, uint64_t ns) {
      (map ? map_calls : unmap_calls)++;
      (map ? map_ns : unmap_ns) += ns;
    }
    RegionStats& operator+=(const RegionStats& o) {
      records += o.records, invalid += o.invalid, pages_mapped += o.pages_mapped;
      reclaims += o.reclaims, pages_reclaimed += o.pages_reclaimed;
      map_calls += o.map_calls, map_ns += o.map_ns, unmap_calls += o.unmap_calls, unmap_ns += o.unmap_ns;
      return *this;
    }
  };
  const RegionStats& region_stats(uint32_t i) const { return regions_[i].stats; }
  // Windows mapped in region `i` now (one MAP each). O(windows).
  uint64_t windows_in(uint32_t i) const;

 private:
  struct Region {
    FaultRegionSpec spec;
    WindowParams window;
    uint64_t pages = 0;
    PageBitmap bitmap;
    bool pinned = false;
    RegionStats stats;
  };

  // Returns false (and warns) if the record is not serviceable.
  bool plan_record(const FaultRecord& r, FaultPlan& out, uint32_t& region_out, uint64_t& page_out);
  int find_region(Iova addr) const;
  // Reclaims cold windows until `bytes` fit, never one overlapping `span` of `region`.
  bool make_room(uint64_t bytes, uint32_t region, PageSpan span, FaultPlan& out);
  void coalesce(FaultPlan& out);
  void add_map(uint32_t region, uint64_t first, uint64_t count, FaultPlan& out);
  // Forgets a planned map: its pages unmapped again, its charge and window gone.
  void drop_map(const DmaRun& run);
  DmaRun run_of(uint32_t region, uint64_t first, uint64_t count) const;

  PinAccounting& accounting_;
  std::vector<Region> regions_;
  WindowTable windows_;
  uint64_t batch_ = 0;
  bool reclaim_ = false;
  Stats stats_;
  RateLimit warn_limit_;
};

}  // namespace pinless::iommu
