// PageBitmap: one bit per page of a guest RAM region, set = mapped (and pinned) in the
// host IOMMU. The fault engine consults it so that no page is ever mapped twice, and walks
// its clear runs so that only unmapped sub-ranges of a window are mapped.
// Value type; thread-compatible.
#pragma once

#include <cstdint>
#include <vector>

namespace pinless::iommu {

class PageBitmap {
 public:
  PageBitmap() = default;
  explicit PageBitmap(uint64_t pages) : pages_(pages), words_((pages + 63) / 64, 0) {}

  uint64_t size() const { return pages_; }
  uint64_t count_set() const { return set_; }
  bool test(uint64_t page) const { return (words_[page / 64] >> (page % 64)) & 1; }
  // Sets/clears [first, first + count); count_set() follows exactly (bits already in the
  // target state are not counted twice).
  void set(uint64_t first, uint64_t count);
  void clear(uint64_t first, uint64_t count);
  // True if every page in [first, first + count) is set.
  bool all_set(uint64_t first, uint64_t count) const { return next_clear(first, first + count) == first + count; }

  // First set/clear page in [from, end), or end if none.
  uint64_t next_set(uint64_t from, uint64_t end) const;
  uint64_t next_clear(uint64_t from, uint64_t end) const;
  // Last set page in [0, at], or kNone.
  static constexpr uint64_t kNone = ~uint64_t{0};
  uint64_t prev_set(uint64_t at) const;

  // Calls fn(first, count) for each maximal run of clear pages inside [first, first + count).
  template <typename Fn>
  void for_each_clear_run(uint64_t first, uint64_t count, Fn&& fn) const {
    uint64_t end = first + count;
    for (uint64_t p = next_clear(first, end); p < end;) {
      uint64_t q = next_set(p, end);
      fn(p, q - p);
      p = next_clear(q, end);
    }
  }

 private:
  uint64_t pages_ = 0;
  uint64_t set_ = 0;
  std::vector<uint64_t> words_;
};

}  // namespace pinless::iommu
