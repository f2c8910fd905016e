// WindowTable: the windows the fault engine has mapped, across all fault regions. A window
// is exactly one MAP call, so it is also the unit of reclaim (iommufd and type1 unmap whole
// mappings only). Windows are kept in least-recently-faulted order for reclaim. Lookups are
// O(1): a lazily allocated two-level table from (region, first page) to a slab slot (4 bytes
// per page, only for 512-page chunks that ever held a window start), and a per-region bitmap
// of window starts to find the window holding a page. Windows live in fixed-size slab chunks
// that never move: growing never copies the table (measured in the nested testbed, the
// vector-doubling copy was a latency spike of 0.3-2 ms on the fault path at 1k-2k windows).
// No allocation per window once warm.
// Thread-compatible (owned by FaultEngine).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "pinless/iommu/page_bitmap.h"

namespace pinless::iommu {

class WindowTable {
 public:
  static constexpr uint32_t kNil = ~uint32_t{0};
  struct Window {
    uint32_t region = 0;
    uint64_t first = 0;
    uint64_t pages = 0;
    uint64_t batch = 0;  // last batch that faulted in it
    uint32_t prev = kNil;
    uint32_t next = kNil;
  };

  void add_region(uint64_t pages);
  // Inserts at the most-recent end; the range must not overlap a window.
  uint32_t insert(uint32_t region, uint64_t first, uint64_t pages, uint64_t batch);
  // The window starting exactly at `first`, or kNil.
  uint32_t find(uint32_t region, uint64_t first) const;
  // The window holding `page`, or kNil.
  uint32_t containing(uint32_t region, uint64_t page) const;
  void touch(uint32_t id, uint64_t batch);
  void grow(uint32_t id, uint64_t more_pages) { at(id).pages += more_pages; }
  void erase(uint32_t id);
  void clear();

  uint32_t coldest() const { return head_; }
  const Window& operator[](uint32_t id) const { return at(id); }
  size_t size() const { return size_; }
  // Calls fn(const Window&) coldest first.
  template <typename Fn>
  void for_each(Fn&& fn) const {
    for (uint32_t id = head_; id != kNil; id = at(id).next) fn(at(id));
  }

 private:
  static constexpr uint64_t kChunkPages = 512;
  static constexpr uint32_t kSlabChunk = 256;  // windows per slab chunk
  Window& at(uint32_t id) { return slab_[id / kSlabChunk][id % kSlabChunk]; }
  const Window& at(uint32_t id) const { return slab_[id / kSlabChunk][id % kSlabChunk]; }
  uint32_t& slot(uint32_t region, uint64_t first);
  void unlink(uint32_t id);
  void push_back(uint32_t id);

  std::vector<std::unique_ptr<Window[]>> slab_;  // chunks of kSlabChunk windows
  uint32_t slab_used_ = 0;                         // ids below this have been handed out
  std::vector<uint32_t> free_;
  uint32_t head_ = kNil;
  uint32_t tail_ = kNil;
  size_t size_ = 0;
  std::vector<PageBitmap> starts_;                              // per region: bit = a window starts here
  std::vector<std::vector<std::unique_ptr<uint32_t[]>>> index_;  // per region, per chunk: first page -> slot
};

}  // namespace pinless::iommu
