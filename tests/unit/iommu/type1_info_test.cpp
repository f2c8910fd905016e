#include <doctest/doctest.h>
#include <linux/vfio.h>

#include <cstring>
#include <vector>

#include "pinless/iommu/type1_info.h"

using namespace pinless;
using namespace pinless::iommu;

namespace {

// Builds a GET_INFO buffer by hand: header, then caps appended at given offsets.
struct InfoBuf {
  std::vector<uint8_t> b;
  explicit InfoBuf(size_t size) : b(size, 0) {
    head()->argsz = static_cast<uint32_t>(size);
    head()->flags = VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS;
    head()->iova_pgsizes = 0x1000;
  }
  vfio_iommu_type1_info* head() { return reinterpret_cast<vfio_iommu_type1_info*>(b.data()); }
  void cap(size_t off, uint16_t id, uint32_t next) {
    vfio_info_cap_header h{id, 1, next};
    std::memcpy(b.data() + off, &h, sizeof(h));
  }
  void u32(size_t off, uint32_t v) { std::memcpy(b.data() + off, &v, 4); }
  void u64(size_t off, uint64_t v) { std::memcpy(b.data() + off, &v, 8); }
};

}  // namespace

TEST_CASE("type1 info: ranges and DMA avail from a well-formed chain, unknown caps skipped") {
  InfoBuf ib(24 + 16 + 16 + 12 + 4 + 32);
  ib.head()->cap_offset = 24;
  ib.cap(24, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 56);
  ib.u32(32, 1);
  ib.u64(40, 0x1000);
  ib.u64(48, 0xffffffff);
  ib.cap(56, 0x77, 72);  // unknown id
  ib.cap(72, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 0);
  ib.u32(80, 42);
  auto info = parse_type1_info(ib.b).value();
  CHECK(info.page_sizes == 0x1000);
  CHECK(info.have_iova_ranges);
  REQUIRE(info.iova_ranges.size() == 1);
  CHECK(info.iova_ranges[0].start == Iova(0x1000));
  CHECK(info.iova_ranges[0].size == 0xffffefff + 1);
  CHECK(info.dma_avail == 42u);
}

TEST_CASE("type1 info: no CAPS flag means no chain, and a short buffer asks for more") {
  InfoBuf ib(24);
  ib.head()->flags = VFIO_IOMMU_INFO_PGSIZES;
  ib.head()->cap_offset = 12345;  // must be ignored
  auto info = parse_type1_info(ib.b).value();
  CHECK_FALSE(info.have_iova_ranges);
  ib.head()->flags |= VFIO_IOMMU_INFO_CAPS;
  ib.head()->argsz = 200;
  CHECK(parse_type1_info(ib.b).value().needed_argsz == 200);
  CHECK_FALSE(parse_type1_info(std::span<const uint8_t>(ib.b.data(), 10)));
}

TEST_CASE("type1 info: a chain that loops is rejected") {
  InfoBuf ib(64);
  ib.head()->cap_offset = 24;
  ib.cap(24, 0x55, 40);
  ib.cap(40, 0x55, 24);  // back to the first
  auto r = parse_type1_info(ib.b);
  REQUIRE_FALSE(r);
  CHECK(r.error().err() == ELOOP);
  InfoBuf self(48);
  self.head()->cap_offset = 24;
  self.cap(24, 0x55, 24);
  CHECK_FALSE(parse_type1_info(self.b));
}

TEST_CASE("type1 info: out-of-bounds and misaligned offsets are rejected") {
  InfoBuf ib(48);
  ib.head()->cap_offset = 44;  // header would end past the buffer
  CHECK_FALSE(parse_type1_info(ib.b));
  ib.head()->cap_offset = 4000;
  CHECK_FALSE(parse_type1_info(ib.b));
  ib.head()->cap_offset = 8;  // inside the fixed header
  CHECK_FALSE(parse_type1_info(ib.b));
  ib.head()->cap_offset = 26;
  CHECK_FALSE(parse_type1_info(ib.b));
  ib.head()->cap_offset = 24;
  ib.cap(24, 0x55, 1000);  // next beyond the end
  CHECK_FALSE(parse_type1_info(ib.b));
}

TEST_CASE("type1 info: an IOVA range count larger than the buffer is rejected") {
  InfoBuf ib(24 + 16 + 16);
  ib.head()->cap_offset = 24;
  ib.cap(24, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 0);
  ib.u32(32, 2);  // room for one only
  CHECK_FALSE(parse_type1_info(ib.b));
  ib.u32(32, 0xffffffff);
  CHECK_FALSE(parse_type1_info(ib.b));
  ib.u32(32, 1);
  ib.u64(40, 0x5000);
  ib.u64(48, 0x4000);  // end before start
  CHECK_FALSE(parse_type1_info(ib.b));
}

TEST_CASE("type1 info: smallest page size") {
  CHECK(min_page_size(0x40201000) == 0x1000);
  CHECK(min_page_size(0) == 0);
}
