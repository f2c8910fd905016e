// The virtio-iommu model over NestedViommuHost over NestedDomains over the fake iommufd:
// guest requests become replace-attaches and IOAS_COPYs, and the model's statuses carry the
// host's refusals (a MAP of a GPA outside guest RAM is FAULT, not a host map of something else).
#include <doctest/doctest.h>

#include "pinless/vmm/virtio/viommu_host.h"
#include "unit/iommu/fake_iommu.h"
#include "unit/virtio/iommu/viommu_rig.h"

using namespace pinless;
using namespace pinless::vmm;
using pinless::testing::FakeIommufd;
using pinless::testing::FakeSys;
namespace vt = pinless::virtio::testing;

TEST_CASE("viommu host: guest ATTACH/MAP/UNMAP/DETACH reach iommufd as replace-attach and IOAS_COPY") {
  FakeSys sys;
  FakeIommufd k(sys);
  auto ctx = iommu::Iommufd::open(sys).value();
  std::vector<iommu::NestedDomains::RamRegion> ram{{{Gpa(0), 256 * kMiB}, Hva(0x7f0000000000)}};
  auto nd = iommu::NestedDomains::create(*ctx, ram, 55).value();
  std::vector<uint32_t> pts;
  nd->add_endpoint(0x18, [&](uint32_t pt) -> Status {
    pts.push_back(pt);
    return {};
  });
  NestedViommuHost host(*nd);
  auto model = virtio::ViommuModel::create(host, vt::test_config()).value();
  model->set_features(vt::kAllFeatures);
  auto send = [&](const std::vector<uint8_t>& req) {
    std::array<uint8_t, 4> tail{};
    REQUIRE(model->handle(req, tail) == 4);
    return tail[0];
  };

  CHECK(send(vt::attach_req(3, 0x18)) == vt::OK);
  uint32_t ioas = nd->domain_ioas(3).value();
  CHECK(pts.back() == ioas);
  CHECK(send(vt::map_req(3, 0x1000000, 0x1001fff, 0x200000)) == vt::OK);
  CHECK(k.maps[ioas].at(0x1000000).va == 0x7f0000200000);
  CHECK(k.maps[ioas].at(0x1000000).len == 0x2000);
  CHECK(send(vt::map_req(3, 0x2000000, 0x2000fff, 512 * kMiB)) == vt::FAULT);  // beyond guest RAM
  CHECK(k.maps[ioas].size() == 1);
  CHECK(send(vt::unmap_req(3, 0x1000000, 0x1001fff)) == vt::OK);
  CHECK(k.maps[ioas].empty());
  CHECK(send(vt::detach_req(3, 0x18)) == vt::OK);
  CHECK(pts.back() == 55);  // back to the identity IOAS (config bypass = 1)
  CHECK_FALSE(nd->domain_ioas(3).has_value());  // the domain died with its last endpoint
}
