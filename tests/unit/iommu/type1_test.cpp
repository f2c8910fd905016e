#include <doctest/doctest.h>
#include <linux/vfio.h>

#include <cstring>
#include <map>

#include "fakes/fake_sys.h"
#include "pinless/iommu/dma_mapping.h"
#include "pinless/iommu/type1_backend.h"

using namespace pinless;
using namespace pinless::iommu;
using pinless::testing::FakeSys;

namespace {

// A VFIO type1 container: API version, extension, groups, SET_IOMMU, MAP/UNMAP, GET_INFO.
struct FakeType1 {
  explicit FakeType1(FakeSys& s) : sys(s) {
    sys.on_open("/dev/vfio/vfio");
    sys.on_ioctl(VFIO_GET_API_VERSION, [this](int, unsigned long, void*) { return api; });
    sys.on_ioctl(VFIO_CHECK_EXTENSION, [this](int, unsigned long, void* a) {
      return reinterpret_cast<uintptr_t>(a) == VFIO_TYPE1v2_IOMMU ? type1v2 : 0;
    });
    sys.on_ioctl(VFIO_GROUP_GET_STATUS, [this](int, unsigned long, void* a) {
      auto* st = static_cast<vfio_group_status*>(a);
      if (st->argsz != sizeof(*st)) return -EINVAL;
      st->flags = viable ? VFIO_GROUP_FLAGS_VIABLE : 0;
      return 0;
    });
    sys.on_ioctl(VFIO_GROUP_SET_CONTAINER, [this](int, unsigned long, void*) { return ++set_container, 0; });
    sys.on_ioctl(VFIO_SET_IOMMU, [this](int, unsigned long, void* a) {
      set_iommu_arg = reinterpret_cast<uintptr_t>(a);
      return set_iommu_err ? -set_iommu_err : 0;
    });
    sys.on_ioctl(VFIO_IOMMU_MAP_DMA, [this](int, unsigned long, void* a) {
      auto* m = static_cast<vfio_iommu_type1_dma_map*>(a);
      last_map = *m;
      if (m->argsz != sizeof(*m)) return -EINVAL;
      if (map_err) return -map_err;
      maps[m->iova] = m->size;
      return 0;
    });
    sys.on_ioctl(VFIO_IOMMU_UNMAP_DMA, [this](int, unsigned long, void* a) {
      auto* u = static_cast<vfio_iommu_type1_dma_unmap*>(a);
      if (u->argsz != sizeof(*u) || u->flags != 0) return -EINVAL;
      auto it = maps.find(u->iova);
      u->size = (it != maps.end() && it->second == u->size) ? u->size : 0;
      if (u->size) maps.erase(it);
      return 0;
    });
    sys.on_ioctl(VFIO_IOMMU_GET_INFO, [this](int, unsigned long, void* a) {
      auto* head = static_cast<vfio_iommu_type1_info*>(a);
      uint32_t have = head->argsz;
      info_calls++;
      // Two ranges around the x86 MSI window, then DMA avail: 24 + 16 + 32 + 12 (+4 pad).
      std::vector<uint8_t> b(88, 0);
      auto* h = reinterpret_cast<vfio_iommu_type1_info*>(b.data());
      h->argsz = static_cast<uint32_t>(b.size());
      h->flags = VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS;
      h->iova_pgsizes = 0x40201000;
      h->cap_offset = 24;
      auto* cap = reinterpret_cast<vfio_iommu_type1_info_cap_iova_range*>(b.data() + 24);
      cap->header = {VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1, 72};
      cap->nr_iovas = 2;
      cap->iova_ranges[0] = {0, 0xfedfffff};
      cap->iova_ranges[1] = {0xfef00000, 0x7fffffffff};
      auto* avail = reinterpret_cast<vfio_iommu_type1_info_dma_avail*>(b.data() + 72);
      avail->header = {VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1, 0};
      avail->avail = 65000;
      // Like the kernel: a short buffer gets the fixed part and the needed argsz only.
      std::memcpy(a, b.data(), std::min<size_t>(have, b.size()));
      if (have < b.size()) head->cap_offset = 0;
      return 0;
    });
  }
  FakeSys& sys;
  int api = VFIO_API_VERSION;
  int type1v2 = 1;
  bool viable = true;
  int set_container = 0;
  uintptr_t set_iommu_arg = 0;
  int set_iommu_err = 0;
  int map_err = 0;
  int info_calls = 0;
  vfio_iommu_type1_dma_map last_map{};
  std::map<uint64_t, uint64_t> maps;
};

}  // namespace

TEST_CASE("type1: missing /dev/vfio/vfio says modprobe vfio-pci") {
  FakeSys sys;
  auto be = Type1Backend::open(sys);
  REQUIRE_FALSE(be);
  CHECK(be.error().message().find("modprobe vfio-pci") != std::string::npos);
}

TEST_CASE("type1: wrong API version or no TYPE1v2 fails and closes the container") {
  FakeSys sys;
  FakeType1 k(sys);
  k.api = 1;
  CHECK_FALSE(Type1Backend::open(sys));
  CHECK(sys.open_fds() == 0);
  k.api = VFIO_API_VERSION;
  k.type1v2 = 0;
  auto r = Type1Backend::open(sys);
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("type1v2") != std::string::npos);
  CHECK(sys.open_fds() == 0);
}

TEST_CASE("type1: a non-viable group names the devices that share it") {
  FakeSys sys;
  FakeType1 k(sys);
  sys.on_open("/dev/vfio/12");
  k.viable = false;
  auto be = Type1Backend::open(sys, [](int g) {
    CHECK(g == 12);
    return std::vector<std::string>{"0000:00:03.0", "0000:00:03.1"};
  }).value();
  auto r = be->add_group(12);
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("group 12 holds: 0000:00:03.0, 0000:00:03.1") != std::string::npos);
  CHECK(be->group_fd(12) == -1);
  CHECK(sys.open_fds() == 1);  // the group fd was closed
}

TEST_CASE("type1: groups join the container; the IOMMU type is set once, after the first group") {
  FakeSys sys;
  FakeType1 k(sys);
  sys.on_open("/dev/vfio/3");
  sys.on_open("/dev/vfio/4");
  auto be = Type1Backend::open(sys).value();
  int g3 = be->add_group(3).value();
  CHECK(be->add_group(3).value() == g3);
  CHECK(be->add_group(4));
  CHECK(k.set_container == 2);
  CHECK(sys.count(VFIO_SET_IOMMU) == 1);
  CHECK(k.set_iommu_arg == VFIO_TYPE1v2_IOMMU);
}

TEST_CASE("type1: SET_IOMMU EPERM hints at interrupt remapping and drops the group") {
  FakeSys sys;
  FakeType1 k(sys);
  sys.on_open("/dev/vfio/3");
  k.set_iommu_err = EPERM;
  auto be = Type1Backend::open(sys).value();
  auto r = be->add_group(3);
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("allow_unsafe_interrupts") != std::string::npos);
  CHECK(be->group_fd(3) == -1);
  CHECK(sys.open_fds() == 1);
}

TEST_CASE("type1: MAP_DMA/UNMAP_DMA structs, ENOMEM hint, and RAII rollback") {
  FakeSys sys;
  FakeType1 k(sys);
  auto be = Type1Backend::open(sys).value();
  {
    auto m = DmaMapping::create(*be, Iova(0x200000), Hva(0x7f0000000000), 0x200000, Perm::kReadWrite).value();
    CHECK(k.last_map.argsz == sizeof(vfio_iommu_type1_dma_map));
    CHECK(k.last_map.flags == (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE));
    CHECK(k.last_map.iova == 0x200000);
    CHECK(k.last_map.vaddr == 0x7f0000000000);
    CHECK(k.last_map.size == 0x200000);
    CHECK(be->mapped_bytes() == 0x200000);
  }
  CHECK(k.maps.empty());
  CHECK(be->mapped_bytes() == 0);
  k.map_err = ENOMEM;
  auto r = be->map(Iova(0), Hva(0x7f0000000000), 512 * kMiB, Perm::kRead);
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("ulimit -l 524288") != std::string::npos);
  CHECK(r.error().message().find("IOMMU_OPTION_RLIMIT_MODE") == std::string::npos);  // iommufd only
  // Unmapping a range that was never mapped is an error, not a silent success.
  CHECK_FALSE(be->unmap(Iova(0x1000), 0x1000));
}

TEST_CASE("type1: GET_INFO reports ranges, page sizes, DMA avail") {
  FakeSys sys;
  FakeType1 k(sys);
  auto be = Type1Backend::open(sys).value();
  auto info = be->info().value();
  CHECK(info.page_sizes == 0x40201000);
  CHECK(info.dma_avail == 65000u);
  REQUIRE(info.iova_ranges.size() == 2);
  auto ranges = be->iova_ranges().value();
  REQUIRE(ranges.size() == 2);
  CHECK(ranges[0].end() == Iova(0xfee00000));
  CHECK(ranges[1].start == Iova(0xfef00000));
}
