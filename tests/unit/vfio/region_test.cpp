#include <doctest/doctest.h>
#include <linux/vfio.h>

#include <cstring>
#include <vector>

#include "pinless/vfio/region.h"

using namespace pinless;
using namespace pinless::vfio;

namespace {
// A GET_REGION_INFO buffer with a sparse-mmap capability at `cap` holding `areas`.
std::vector<uint8_t> info_with_sparse(uint32_t cap, std::vector<std::pair<uint64_t, uint64_t>> areas,
                                      uint32_t next = 0) {
  std::vector<uint8_t> buf(cap + 16 + 16 * areas.size());
  vfio_info_cap_header h{VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1, next};
  std::memcpy(buf.data() + cap, &h, sizeof(h));
  uint32_t nr = uint32_t(areas.size());
  std::memcpy(buf.data() + cap + 8, &nr, 4);
  for (size_t i = 0; i < areas.size(); ++i) {
    std::memcpy(buf.data() + cap + 16 + 16 * i, &areas[i].first, 8);
    std::memcpy(buf.data() + cap + 24 + 16 * i, &areas[i].second, 8);
  }
  return buf;
}
}  // namespace

TEST_CASE("region caps: a sparse-mmap capability yields sorted areas inside the region") {
  RegionInfo info;
  info.size = 0x10000;
  auto buf = info_with_sparse(sizeof(vfio_region_info), {{0x8000, 0x8000}, {0, 0x2000}, {0xf000, 0x2000}});
  CHECK(parse_region_caps(buf, sizeof(vfio_region_info), info));
  CHECK(info.sparse);
  REQUIRE(info.areas.size() == 2);  // the area past the end is dropped
  CHECK(info.areas[0].start == 0);
  CHECK(info.areas[1].start == 0x8000);
}

TEST_CASE("region caps: malformed chains stop without reading outside the buffer") {
  RegionInfo info;
  info.size = 0x1000;
  // Capability pointing past the buffer.
  std::vector<uint8_t> small(sizeof(vfio_region_info) + 4);
  CHECK_FALSE(parse_region_caps(small, sizeof(vfio_region_info), info));
  // Inside the fixed struct.
  CHECK_FALSE(parse_region_caps(small, 4, info));
  // A chain pointing back at itself.
  auto loop = info_with_sparse(sizeof(vfio_region_info), {{0, 0x1000}}, sizeof(vfio_region_info));
  CHECK_FALSE(parse_region_caps(loop, sizeof(vfio_region_info), info));
  // An absurd number of areas.
  auto huge = info_with_sparse(sizeof(vfio_region_info), {{0, 0x1000}});
  uint32_t nr = 100000;
  std::memcpy(huge.data() + sizeof(vfio_region_info) + 8, &nr, 4);
  CHECK_FALSE(parse_region_caps(huge, sizeof(vfio_region_info), info));
}

TEST_CASE("mmap pieces: the MSI-X table and PBA pages are cut out, whole pages only") {
  RegionInfo r;
  r.size = 0x10000;
  r.flags = VFIO_REGION_INFO_FLAG_MMAP;
  auto p = mmap_pieces(r, {{0x2000, 0x100}, {0x2800, 8}});
  REQUIRE(p.size() == 2);
  CHECK(p[0].start == 0);
  CHECK(p[0].size == 0x2000);
  CHECK(p[1].start == 0x3000);
  CHECK(p[1].size == 0xd000);

  // Not mmappable: nothing. Sparse areas are respected and intersected.
  RegionInfo none = r;
  none.flags = 0;
  CHECK(mmap_pieces(none, {}).empty());
  RegionInfo sparse = r;
  sparse.sparse = true;
  sparse.areas = {{0, 0x4000}, {0x8000, 0x800}};
  auto s = mmap_pieces(sparse, {{0x1000, 0x10}});
  REQUIRE(s.size() == 2);
  CHECK(s[0].start == 0);
  CHECK(s[0].size == 0x1000);
  CHECK(s[1].start == 0x2000);  // the sub-page area at 0x8000 is dropped
  // A BAR smaller than a page cannot be mapped at all.
  RegionInfo tiny = r;
  tiny.size = 0x100;
  CHECK(mmap_pieces(tiny, {}).empty());
}
