#include "pinless/vfio/region.h"

#include <linux/vfio.h>

#include <algorithm>
#include <cstring>

namespace pinless::vfio {

bool RegionInfo::mmappable() const { return (flags & VFIO_REGION_INFO_FLAG_MMAP) != 0; }

bool parse_region_caps(std::span<const uint8_t> buf, uint32_t cap_offset, RegionInfo& info) {
  uint32_t off = cap_offset;
  for (int hops = 0; off != 0; ++hops) {
    // Each header must fit, be 4-byte aligned and lie past the fixed struct; bound the hops
    // so a chain that points back at itself ends.
    if (hops > 64 || off < sizeof(vfio_region_info) || off % 4 != 0 ||
        uint64_t(off) + sizeof(vfio_info_cap_header) > buf.size()) {
      return false;
    }
    vfio_info_cap_header hdr;
    std::memcpy(&hdr, buf.data() + off, sizeof(hdr));
    if (hdr.id == VFIO_REGION_INFO_CAP_SPARSE_MMAP) {
      uint64_t fixed = sizeof(vfio_info_cap_header) + 8;  // nr_areas + reserved
      if (off + fixed > buf.size()) return false;
      uint32_t nr = 0;
      std::memcpy(&nr, buf.data() + off + sizeof(vfio_info_cap_header), 4);
      if (nr > 1024 || off + fixed + uint64_t(nr) * 16 > buf.size()) return false;
      info.sparse = true;
      info.areas.clear();
      for (uint32_t i = 0; i < nr; ++i) {
        uint64_t a[2];
        std::memcpy(a, buf.data() + off + fixed + i * 16, 16);
        if (a[1] != 0 && a[0] <= info.size && a[1] <= info.size - a[0]) {
          info.areas.push_back({a[0], a[1]});
        }
      }
      std::sort(info.areas.begin(), info.areas.end(),
                [](const auto& x, const auto& y) { return x.start < y.start; });
    }
    if (hdr.next != 0 && hdr.next <= off) return false;
    off = hdr.next;
  }
  return true;
}

std::vector<Range<uint64_t>> mmap_pieces(const RegionInfo& region, const std::vector<Range<uint64_t>>& traps,
                                         uint64_t page) {
  std::vector<Range<uint64_t>> pieces;
  if (!region.mmappable()) return pieces;
  if (region.sparse) {
    pieces = region.areas;
  } else {
    pieces.push_back({0, region.size});
  }
  for (const auto& t : traps) {
    if (t.size == 0) continue;
    uint64_t lo = align_down(t.start, page);
    uint64_t hi = align_up(t.start + t.size, page);
    std::vector<Range<uint64_t>> next;
    for (const auto& p : pieces) {
      uint64_t ps = p.start, pe = p.start + p.size;
      if (pe <= lo || ps >= hi) {
        next.push_back(p);
        continue;
      }
      if (ps < lo) next.push_back({ps, lo - ps});
      if (pe > hi) next.push_back({hi, pe - hi});
    }
    pieces = std::move(next);
  }
  // Only whole pages can be mapped.
  std::vector<Range<uint64_t>> out;
  for (const auto& p : pieces) {
    uint64_t s = align_up(p.start, page), e = align_down(p.start + p.size, page);
    if (e > s) out.push_back({s, e - s});
  }
  return out;
}

}  // namespace pinless::vfio
