#include "pinless/iommu/page_bitmap.h"

#include <algorithm>
#include <bit>

namespace pinless::iommu {
namespace {
// Bits [lo, hi) of a word, 0 <= lo < hi <= 64.
inline uint64_t mask(unsigned lo, unsigned hi) {
  uint64_t upper = hi == 64 ? ~uint64_t{0} : (uint64_t{1} << hi) - 1;
  return upper & ~((uint64_t{1} << lo) - 1);
}
}  // namespace

void PageBitmap::set(uint64_t first, uint64_t count) {
  uint64_t end = first + count;
  while (first < end) {
    uint64_t w = first / 64;
    unsigned lo = first % 64;
    unsigned hi = static_cast<unsigned>(std::min<uint64_t>(64, lo + (end - first)));
    uint64_t m = mask(lo, hi);
    // Without -mpopcnt std::popcount is a libgcc call: skip it when the bits were all clear
    // (the common case: a fresh window).
    uint64_t fresh = m & ~words_[w];
    set_ += fresh == m ? hi - lo : static_cast<unsigned>(std::popcount(fresh));
    words_[w] |= m;
    first += hi - lo;
  }
}

void PageBitmap::clear(uint64_t first, uint64_t count) {
  uint64_t end = first + count;
  while (first < end) {
    uint64_t w = first / 64;
    unsigned lo = first % 64;
    unsigned hi = static_cast<unsigned>(std::min<uint64_t>(64, lo + (end - first)));
    uint64_t m = mask(lo, hi);
    uint64_t was = m & words_[w];
    set_ -= was == m ? hi - lo : static_cast<unsigned>(std::popcount(was));
    words_[w] &= ~m;
    first += hi - lo;
  }
}

uint64_t PageBitmap::next_set(uint64_t from, uint64_t end) const {
  while (from < end) {
    uint64_t bits = words_[from / 64] >> (from % 64);
    if (bits != 0) {
      uint64_t p = from + std::countr_zero(bits);
      return p < end ? p : end;
    }
    from = (from / 64 + 1) * 64;
  }
  return end;
}

uint64_t PageBitmap::next_clear(uint64_t from, uint64_t end) const {
  while (from < end) {
    uint64_t bits = ~words_[from / 64] >> (from % 64);
    if (bits != 0) {
      uint64_t p = from + std::countr_zero(bits);
      return p < end ? p : end;
    }
    from = (from / 64 + 1) * 64;
  }
  return end;
}

uint64_t PageBitmap::prev_set(uint64_t at) const {
  uint64_t w = at / 64;
  uint64_t bits = words_[w] & mask(0, static_cast<unsigned>(at % 64) + 1);
  for (;;) {
    if (bits != 0) return w * 64 + 63 - std::countl_zero(bits);
    if (w == 0) return kNone;
    bits = words_[--w];
  }
}

}  // namespace pinless::iommu
