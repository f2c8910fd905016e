#include <doctest/doctest.h>

#include <array>
#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "viommu_rig.h"

using namespace pinless;
using namespace pinless::virtio;
using namespace pinless::virtio::testing;
using Calls = std::vector<std::string>;

namespace {
constexpr uint32_t R = w::map::kFlagRead, W = w::map::kFlagWrite, M = w::map::kFlagMmio;

// A rig with endpoint 0x8 in domain 1 and the host calls so far dropped.
struct Attached : Rig {
  explicit Attached(ViommuConfig c = test_config(), uint64_t features = kAllFeatures)
      : Rig(c, features) {
    REQUIRE(attach(1, 0x8) == OK);
    take_calls();
  }
};
}  // namespace

TEST_CASE("viommu map: recorded with its flags; the host gets what the flags grant") {
  Attached r;
  CHECK(r.map(1, 0x10000, 0x1ffff, 0x80000000, R) == OK);
  CHECK(r.map(1, 0x20000, 0x20fff, 0x90000000, W) == OK);
  CHECK(r.map(1, 0x200000, 0x3fffff, 0x40000000, R | W) == OK);
  CHECK(r.take_calls() == Calls{"map 1 0x10000+0x10000 0x80000000 r",
                                "map 1 0x20000+0x1000 0x90000000 w",
                                "map 1 0x200000+0x200000 0x40000000 rw"});
  // Neither read nor write: recorded, no host call (the kernel refuses such maps).
  CHECK(r.map(1, 0x30000, 0x30fff, 0xa0000000, 0) == OK);
  CHECK(r.take_calls().empty());
  CHECK(r.mappings(1) == std::vector<ViommuMapping>{{0x10000, 0x1ffff, 0x80000000, R},
                                                    {0x20000, 0x20fff, 0x90000000, W},
                                                    {0x30000, 0x30fff, 0xa0000000, 0},
                                                    {0x200000, 0x3fffff, 0x40000000, R | W}});
  CHECK(r.model->stats().mappings == 4);
  CHECK(inconsistency(*r.model, r.host, r.cfg) == "");
}

TEST_CASE("viommu map: RANGE for misalignment, inverted or overflowing ranges") {
  Attached r;
  CHECK(r.map(1, 0x1001, 0x1fff, 0xa000) == RANGE);  // virt_start
  CHECK(r.map(1, 0x1000, 0x1fff, 0xa800) == RANGE);  // phys_start
  CHECK(r.map(1, 0x1000, 0x1ffe, 0xa000) == RANGE);  // virt_end + 1
  CHECK(r.map(1, 0x1000, 0x17ff, 0xa000) == RANGE);
  CHECK(r.map(1, 0x2000, 0x1fff, 0xa000) == RANGE);  // end < start
  CHECK(r.map(1, 0x1000, 0x2fff, 0xfffffffffffff000) == RANGE);  // phys end beyond 2^64
  CHECK(r.take_calls().empty());
  CHECK(r.map(1, 0x1000, 0x1fff, 0xfffffffffffff000) == OK);  // phys end exactly 2^64 - 1
  CHECK(r.mappings(1).size() == 1);

  ViommuConfig whole = test_config();
  whole.input_end = ~0ull;
  Attached z(whole);
  CHECK(z.map(1, 0, ~0ull, 0) == RANGE);  // 2^64 bytes
  CHECK(z.map(1, 0xfffffffffffff000, ~0ull, 0x1000) == OK);  // virt_end + 1 wraps: aligned
  CHECK(z.take_calls() == Calls{"map 1 0xfffffffffffff000+0x1000 0x1000 rw"});

  ViommuConfig big = test_config();
  big.page_size_mask = 0x40200000;  // 2M granule
  Attached b(big);
  CHECK(b.map(1, 0x1000, 0x1fff, 0x1000) == RANGE);
  CHECK(b.map(1, 0x200000, 0x3fffff, 0x1000) == RANGE);
  CHECK(b.map(1, 0x200000, 0x3fffff, 0x400000) == OK);

  ViommuConfig bytes = test_config();
  bytes.page_size_mask = 1;
  Attached y(bytes);
  CHECK(y.map(1, 0x1001, 0x1001, 0x5) == OK);
}

TEST_CASE("viommu map: RANGE outside input_range, over the MSI window or a host hole") {
  ViommuConfig c = test_config();
  c.input_start = 0x10000;
  Attached r(c);
  // Fixed for the model's life (it caches them): set before any MAP asks.
  r.host.reserved_ranges[0x8] = {{Iova(0x4000000), 0x100000}};
  r.host.reserved_ranges[0x10] = {{Iova(0x8000000), 0x1000}};
  CHECK(r.map(1, 0xf000, 0xffff, 0x1000) == RANGE);
  CHECK(r.map(1, 0xf000, 0x10fff, 0x1000) == RANGE);
  CHECK(r.map(1, 0xfffffffff000, 0x1000000000fff, 0x1000) == RANGE);  // beyond 2^48
  CHECK(r.map(1, 0x1000000000000, 0x1000000000fff, 0x1000) == RANGE);
  CHECK(r.map(1, 0xfffffffff000, 0xffffffffffff, 0x1000) == OK);  // the last page

  CHECK(r.map(1, 0xfee00000, 0xfee00fff, 0x1000) == RANGE);
  CHECK(r.map(1, 0xfeeff000, 0xfeefffff, 0x1000) == RANGE);
  CHECK(r.map(1, 0xfed00000, 0xfee00fff, 0x1000) == RANGE);  // straddles the start
  CHECK(r.map(1, 0xfeeff000, 0xfef00fff, 0x1000) == RANGE);  // straddles the end
  CHECK(r.map(1, 0xfed00000, 0xfedfffff, 0x1000) == OK);     // just below
  CHECK(r.map(1, 0xfef00000, 0xfef00fff, 0x1000) == OK);     // just above

  r.take_calls();
  CHECK(r.map(1, 0x40ff000, 0x40fffff, 0x1000) == RANGE);
  CHECK(r.map(1, 0x3fff000, 0x4000fff, 0x1000) == RANGE);
  CHECK(r.map(1, 0x8000000, 0x8000fff, 0x1000) == OK);  // 0x10 is not in domain 1 yet
  CHECK(r.unmap(1, 0x8000000, 0x8000fff) == OK);
  CHECK(r.attach(1, 0x10) == OK);
  r.take_calls();
  CHECK(r.map(1, 0x8000000, 0x8000fff, 0x1000) == RANGE);  // any endpoint's hole counts
  CHECK(r.map(1, 0x4100000, 0x4100fff, 0x1000) == OK);
  CHECK(r.take_calls() == Calls{"map 1 0x4100000+0x1000 0x1000 rw"});
  CHECK(inconsistency(*r.model, r.host, r.cfg) == "");
}

TEST_CASE("viommu map: INVAL for overlaps, unknown flags, MMIO without F_MMIO, bypass domains") {
  Attached r;
  CHECK(r.map(1, 0x1000, 0x2fff, 0xa000) == OK);
  CHECK(r.map(1, 0x5000, 0x5fff, 0xb000, 0) == OK);
  r.take_calls();
  CHECK(r.map(1, 0x2000, 0x3fff, 0xc000) == INVAL);
  CHECK(r.map(1, 0x0, 0x1fff, 0xc000) == INVAL);
  CHECK(r.map(1, 0x0, 0xffff, 0xc000) == INVAL);  // covers both
  CHECK(r.map(1, 0x1000, 0x2fff, 0xa000) == INVAL);  // the same map again
  CHECK(r.map(1, 0x5000, 0x5fff, 0xc000) == INVAL);  // over a flags-0 mapping
  CHECK(r.map(1, 0x3000, 0x3fff, 0xc000, 0x8) == INVAL);
  CHECK(r.map(1, 0x3000, 0x3fff, 0xc000, 0x80000000) == INVAL);
  CHECK(r.map(1, 0x3000, 0x3fff, 0xc000, R | W | M) == INVAL);  // F_MMIO not offered
  CHECK(r.take_calls().empty());
  CHECK(r.map(1, 0x3000, 0x3fff, 0xc000) == OK);  // adjacent on both sides

  CHECK(r.attach(2, 0x10, w::attach::kFlagBypass) == OK);
  CHECK(r.map(2, 0x1000, 0x1fff, 0xa000) == INVAL);

  ViommuConfig c = test_config();
  c.features |= w::kFMmio;
  Attached offered(c);  // offered but not negotiated
  CHECK(offered.map(1, 0x1000, 0x1fff, 0xa000, R | W | M) == INVAL);
  Attached mmio(c, c.features);
  CHECK(mmio.map(1, 0x1000, 0x1fff, 0xfe000000, R | W | M) == OK);
  CHECK(mmio.take_calls() == Calls{"map 1 0x1000+0x1000 0xfe000000 rw"});
  CHECK(mmio.mappings(1).at(0).flags == (R | W | M));
}

TEST_CASE("viommu map: NOENT for a missing domain") {
  Attached r;
  CHECK(r.map(2, 0x1000, 0x1fff, 0xa000) == NOENT);
  CHECK(r.map(0, 0x1000, 0x1fff, 0xa000) == NOENT);
  CHECK(r.map(70000, 0x1000, 0x1fff, 0xa000) == NOENT);
  CHECK(r.take_calls().empty());
}

TEST_CASE("viommu map: host errors become statuses and leave nothing recorded") {
  const std::vector<std::pair<int, uint8_t>> rows{
      {ENOMEM, NOMEM}, {ENOSPC, NOMEM},  {EFAULT, FAULT},  {EINVAL, DEVERR},
      {EBUSY, DEVERR}, {ENOENT, DEVERR}, {EADDRINUSE, DEVERR}, {EIO, DEVERR}};
  for (const auto& [err, status] : rows) {
    CAPTURE(err);
    Attached r;
    r.host.fail_next["map"] = err;
    CHECK(r.map(1, 0x1000, 0x1fff, 0xa000) == status);
    CHECK(r.mappings(1).empty());
    CHECK(r.model->stats().mappings == 0);
    CHECK(r.map(1, 0x1000, 0x1fff, 0xa000) == OK);  // nothing left in the way
    CHECK(r.take_calls() ==
          Calls{"map 1 0x1000+0x1000 0xa000 rw", "map 1 0x1000+0x1000 0xa000 rw"});
    CHECK(inconsistency(*r.model, r.host, r.cfg) == "");
  }
}

TEST_CASE("viommu map: NOMEM beyond the per-domain cap") {
  ViommuConfig c = test_config();
  c.max_mappings_per_domain = 2;
  Attached r(c);
  CHECK(r.attach(2, 0x10) == OK);
  CHECK(r.map(1, 0x1000, 0x1fff, 0xa000) == OK);
  CHECK(r.map(1, 0x2000, 0x2fff, 0xa000, 0) == OK);  // flags-0 mappings count too
  r.take_calls();
  CHECK(r.map(1, 0x3000, 0x3fff, 0xa000) == NOMEM);
  CHECK(r.take_calls().empty());
  CHECK(r.map(2, 0x3000, 0x3fff, 0xa000) == OK);  // per domain
  CHECK(r.unmap(1, 0x2000, 0x2fff) == OK);
  CHECK(r.map(1, 0x3000, 0x3fff, 0xa000) == OK);
}

TEST_CASE("viommu map: MAP and UNMAP are unavailable without MAP_UNMAP negotiated") {
  Attached r(test_config(), kAllFeatures & ~w::kFMapUnmap);
  for (const auto& req : {map_req(1, 0x1000, 0x1fff, 0xa000), unmap_req(1, 0, ~0ull)}) {
    std::array<uint8_t, 4> tail{0xcc, 0xcc, 0xcc, 0xcc};
    CHECK(r.model->handle(req, tail) == 0);
    CHECK(tail == std::array<uint8_t, 4>{0xcc, 0xcc, 0xcc, 0xcc});
  }
  CHECK(r.take_calls().empty());
  CHECK(r.model->stats().dropped == 2);
}
