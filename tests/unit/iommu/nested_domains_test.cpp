// NestedDomains on the fake iommufd: guest RAM mapped once into a source IOAS, each guest
// domain an IOAS filled by IOAS_COPY (so the same host pages back every domain that maps a
// GPA), endpoints moved by their attach callbacks, and every refusal leaving nothing behind.
#include <doctest/doctest.h>

#include "pinless/iommu/nested_domains.h"
#include "unit/iommu/fake_iommu.h"

using namespace pinless;
using namespace pinless::iommu;
using namespace pinless::testing;

namespace {

constexpr uint64_t kHva = 0x7f0000000000;
constexpr uint32_t kIdentity = 77;

struct Rig {
  FakeSys sys;
  FakeIommufd k{sys};
  std::unique_ptr<Iommufd> ctx = Iommufd::open(sys).value();
  // 0..3G and 4G..5G, as around the 32-bit PCI hole.
  std::vector<NestedDomains::RamRegion> ram{{{Gpa(0), 3 * kGiB}, Hva(kHva)},
                                           {{Gpa(4 * kGiB), kGiB}, Hva(kHva + 3 * kGiB)}};
  std::unique_ptr<NestedDomains> nd = NestedDomains::create(*ctx, ram, kIdentity).value();
  std::vector<std::pair<uint32_t, uint32_t>> moves;  // (endpoint, pt)
  int fail_next_attach = 0;

  void device(uint32_t ep) {
    nd->add_endpoint(ep, [this, ep](uint32_t pt) -> Status {
      if (fail_next_attach) return fail("VFIO_DEVICE_ATTACH_IOMMUFD_PT", std::exchange(fail_next_attach, 0));
      moves.emplace_back(ep, pt);
      return {};
    });
  }
};

}  // namespace

TEST_CASE("nested domains: RAM mapped once into a source IOAS nothing is attached to") {
  Rig r;
  const auto& src = r.k.maps[r.nd->source_ioas()];
  REQUIRE(src.size() == 2);
  CHECK(src.at(0).len == 3 * kGiB);
  CHECK(src.at(4 * kGiB).va == kHva + 3 * kGiB);
  CHECK(r.k.maps[r.nd->blocked_ioas()].empty());
  CHECK(r.nd->domain_count() == 0);
}

TEST_CASE("nested domains: a guest MAP is a copy of the source's pages, in every domain that maps them") {
  Rig r;
  r.device(0x18);
  r.device(0x20);
  REQUIRE(r.nd->attach(0x18, 1));
  REQUIRE(r.nd->attach(0x20, 2));
  uint32_t d1 = r.nd->domain_ioas(1).value(), d2 = r.nd->domain_ioas(2).value();
  CHECK(d1 != d2);
  CHECK(r.moves == std::vector<std::pair<uint32_t, uint32_t>>{{0x18, d1}, {0x20, d2}});

  REQUIRE(r.nd->map(1, {Iova(0x1000000), 0x2000}, Gpa(0x5000), Perm::kReadWrite));
  REQUIRE(r.nd->map(2, {Iova(0x9000000), 0x1000}, Gpa(0x6000), Perm::kRead));
  REQUIRE(r.nd->map(1, {Iova(0x2000000), 0x1000}, Gpa(4 * kGiB + 0x1000), Perm::kRead));
  CHECK(r.k.copies == 3);
  CHECK(r.k.maps[d1].at(0x1000000).va == kHva + 0x5000);
  CHECK(r.k.maps[d2].at(0x9000000).va == kHva + 0x6000);  // the same host page as domain 1's second page
  CHECK(r.k.maps[d1].at(0x2000000).va == kHva + 3 * kGiB + 0x1000);
  CHECK(r.k.maps[d2].at(0x9000000).flags == (IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE));
  CHECK(r.nd->mapped_bytes(1) == 0x3000);

  // Not guest RAM: beyond it, in the hole, straddling the hole's edge.
  for (Gpa bad : {Gpa(5 * kGiB), Gpa(3 * kGiB + 0x1000), Gpa(3 * kGiB - 0x1000)}) {
    auto s = r.nd->map(1, {Iova(0x3000000), 0x2000}, bad, Perm::kRead);
    REQUIRE_FALSE(s);
    CHECK(s.error().err() == EFAULT);
  }
  CHECK(r.nd->map(9, {Iova(0x3000000), 0x1000}, Gpa(0), Perm::kRead).error().err() == ENOENT);
  CHECK(r.k.copies == 3);

  // UNMAP takes whole mappings inside the range; one sticking out refuses it whole.
  auto partial = r.nd->unmap(1, {Iova(0x1000000), 0x1000});
  REQUIRE_FALSE(partial);
  CHECK(partial.error().err() == ENOENT);
  CHECK(r.k.maps[d1].size() == 2);
  REQUIRE(r.nd->unmap(1, {Iova(0), 0x10000000}));
  CHECK(r.k.maps[d1].empty());
  CHECK(r.nd->mapped_bytes(1) == 0);

  // The host's counters: successful calls only; bytes per domain, peak kept.
  auto st = r.nd->stats();
  CHECK(st.maps == 3);
  CHECK(st.unmaps == 1);
  CHECK(st.mapped_bytes == 0x1000);  // domain 2's page
  CHECK(st.peak_mapped_bytes == 0x4000);
  r.nd->destroy(2);
  CHECK(r.nd->stats().mapped_bytes == 0);
  CHECK(r.nd->stats().peak_mapped_bytes == 0x4000);
}

TEST_CASE("nested domains: bypass, block, emulated endpoints, refused attach, destroy") {
  Rig r;
  r.device(0x18);
  REQUIRE(r.nd->attach_identity(0x18));
  REQUIRE(r.nd->block(0x18));
  CHECK(r.moves == std::vector<std::pair<uint32_t, uint32_t>>{{0x18, kIdentity}, {0x18, r.nd->blocked_ioas()}});

  REQUIRE(r.nd->attach(0x08, 3));  // no callback: an emulated function; the domain exists
  CHECK(r.nd->domain_count() == 1);
  CHECK(r.moves.size() == 2);

  r.fail_next_attach = EINVAL;
  auto s = r.nd->attach(0x18, 4);
  REQUIRE_FALSE(s);
  CHECK(s.error().err() == EINVAL);
  CHECK(s.error().message().find("endpoint 0x18 -> domain 4") != std::string::npos);
  CHECK_FALSE(r.nd->domain_ioas(4).has_value());  // the IOAS made for it is gone again
  CHECK(r.nd->domain_count() == 1);

  uint32_t d3 = r.nd->domain_ioas(3).value();
  REQUIRE(r.nd->map(3, {Iova(0x1000000), 0x1000}, Gpa(0), Perm::kRead));
  r.nd->destroy(3);
  CHECK(r.nd->domain_count() == 0);
  CHECK(std::find(r.k.destroyed.begin(), r.k.destroyed.end(), d3) != r.k.destroyed.end());
}
