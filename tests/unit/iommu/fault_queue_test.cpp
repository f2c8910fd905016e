#include <doctest/doctest.h>

#include "fake_iommu.h"
#include "pinless/iommu/fault_queue.h"
#include "pinless/iommu/iommufd_backend.h"

using namespace pinless;
using namespace pinless::iommu;
using pinless::testing::FakeFaultFd;
using pinless::testing::FakeIommufd;
using pinless::testing::FakeSys;

namespace {

constexpr uint64_t kBase = 0x40000000;

iommu_hwpt_pgfault raw(uint32_t cookie, uint64_t page, bool last = true) {
  return FakeFaultFd::record(cookie, kBase + page * kPageSize, last);
}

struct Rig {
  FakeSys sys;
  FakeIommufd kernel{sys};
  FakeFaultFd ffd;
  std::unique_ptr<Iommufd> ctx = Iommufd::open(sys).value();
  std::unique_ptr<IommufdBackend> be = IommufdBackend::create(*ctx).value();
  PinAccounting acct;
  FaultEngine engine{acct};
  int fd = sys.new_fd();
  Rig(uint64_t premap = 4, uint64_t limit = 0) {
    acct.set_limit(limit);
    ffd.install(sys);
    FaultRegionSpec s;
    s.name = "ram";
    s.gpa = {Gpa(kBase), 1024 * kPageSize};
    s.hva = Hva(0x7f0000000000);
    s.fault_policy.premap_pages = premap;
    s.fault_policy.window = WindowPolicy::kForward;
    engine.add_region(s).value();
  }
};

}  // namespace

TEST_CASE("queue: an empty queue returns at once without writing") {
  Rig rig;
  FaultQueue q(rig.sys, rig.fd, rig.engine, *rig.be);
  auto d = q.on_readable().value();
  CHECK(d.records == 0);
  CHECK(rig.ffd.writes == 0);
  CHECK(rig.ffd.reads == 1);
}

TEST_CASE("queue: a batch is mapped with coalesced MAPs and answered in one write, once per cookie") {
  Rig rig;
  rig.ffd.groups.push_back({raw(1, 0, false), raw(1, 2, true)});
  rig.ffd.groups.push_back({raw(2, 4)});
  rig.ffd.groups.push_back({raw(3, 100)});
  rig.ffd.groups.push_back({raw(4, 101)});  // same window as 3
  FaultQueue q(rig.sys, rig.fd, rig.engine, *rig.be);
  auto d = q.on_readable().value();
  CHECK(d.records == 5);
  CHECK(d.groups == 4);
  CHECK(d.invalid == 0);
  CHECK(rig.ffd.writes == 1);
  REQUIRE(rig.ffd.answers.size() == 4);
  std::set<uint32_t> cookies;
  for (auto& a : rig.ffd.answers) {
    cookies.insert(a.cookie);
    CHECK(a.code == IOMMUFD_PAGE_RESP_SUCCESS);
  }
  CHECK(cookies.size() == 4);
  CHECK(rig.ffd.waiting.empty());
  // pages 0..7 (two adjacent windows) and 100..103: two MAP calls.
  CHECK(rig.sys.count(IOMMU_IOAS_MAP) == 2);
  auto& maps = rig.kernel.maps[rig.be->ioas_id()];
  CHECK(maps.at(kBase).len == 8 * kPageSize);
  CHECK(maps.at(kBase + 100 * kPageSize).len == 4 * kPageSize);
  CHECK(maps.at(kBase).va == 0x7f0000000000);
}

TEST_CASE("queue: a group larger than the read buffer grows the buffer instead of stalling") {
  Rig rig(1);
  std::vector<iommu_hwpt_pgfault> big;
  for (uint64_t i = 0; i < 100; ++i) big.push_back(raw(9, i * 2, i == 99));
  rig.ffd.groups.push_back(big);
  FaultQueue q(rig.sys, rig.fd, rig.engine, *rig.be, {.batch_records = 16, .max_records = 256, .max_reads = 4});
  auto d = q.on_readable().value();
  CHECK(d.records == 100);
  REQUIRE(rig.ffd.answers.size() == 1);
  CHECK(rig.ffd.answers[0].code == IOMMUFD_PAGE_RESP_SUCCESS);
}

TEST_CASE("queue: a refused response is skipped and the rest are still answered") {
  Rig rig;
  for (uint32_t c = 1; c <= 3; ++c) rig.ffd.groups.push_back({raw(c, c * 10)});
  rig.ffd.refuse.insert(2);
  FaultQueue q(rig.sys, rig.fd, rig.engine, *rig.be);
  auto d = q.on_readable();
  REQUIRE(d);
  CHECK(d->refused == 1);
  CHECK(d->groups == 3);
  REQUIRE(rig.ffd.answers.size() == 2);
  CHECK(rig.ffd.answers[0].cookie == 1);
  CHECK(rig.ffd.answers[1].cookie == 3);
}

TEST_CASE("queue: a short read ends the call: one read and one write per lone fault") {
  Rig rig;
  rig.ffd.groups.push_back({raw(1, 7)});
  FaultQueue q(rig.sys, rig.fd, rig.engine, *rig.be);
  auto d = q.on_readable().value();
  CHECK(d.groups == 1);
  CHECK_FALSE(d.more);
  CHECK(rig.ffd.reads == 1);
  CHECK(rig.ffd.writes == 1);
}

TEST_CASE("queue: a group that did not fit the space left is handled when the fd is reported again") {
  Rig rig(1);
  rig.ffd.groups.push_back({raw(1, 1)});
  rig.ffd.groups.push_back({raw(2, 2)});
  rig.ffd.groups.push_back({raw(3, 10, false), raw(3, 11, false), raw(3, 12, true)});
  FaultQueue q(rig.sys, rig.fd, rig.engine, *rig.be, {.batch_records = 4, .max_records = 64, .max_reads = 16});
  auto d = q.on_readable().value();
  CHECK(d.groups == 2);  // the 3-record group did not fit behind them: short read, stop
  CHECK(rig.ffd.groups.size() == 1);  // still queued, so poll() keeps reporting the fd readable
  d = q.on_readable().value();
  CHECK(d.groups == 1);
  CHECK(rig.ffd.groups.empty());
  REQUIRE(rig.ffd.answers.size() == 3);
  for (auto& a : rig.ffd.answers) CHECK(a.code == IOMMUFD_PAGE_RESP_SUCCESS);
}

TEST_CASE("queue: a failed MAP answers INVALID and leaves nothing mapped or charged") {
  Rig rig;
  rig.ffd.groups.push_back({raw(1, 0)});
  rig.kernel.fail_next(IOMMU_IOAS_MAP, ENOMEM);
  FaultQueue q(rig.sys, rig.fd, rig.engine, *rig.be);
  auto d = q.on_readable().value();
  CHECK(d.invalid == 1);
  REQUIRE(rig.ffd.answers.size() == 1);
  CHECK(rig.ffd.answers[0].code == IOMMUFD_PAGE_RESP_INVALID);
  CHECK(rig.kernel.live_maps() == 0);
  CHECK(rig.acct.total() == 0);
  CHECK(rig.engine.mapped(0).count_set() == 0);
}

TEST_CASE("queue: reclaim unmaps exactly the cold window's MAP range before mapping") {
  Rig rig(4, 8 * kPageSize);
  rig.engine.set_reclaim(true);
  FaultQueue q(rig.sys, rig.fd, rig.engine, *rig.be);
  rig.ffd.groups.push_back({raw(1, 0)});
  REQUIRE(q.on_readable());
  rig.ffd.groups.push_back({raw(2, 50)});
  REQUIRE(q.on_readable());
  rig.ffd.groups.push_back({raw(3, 200)});
  REQUIRE(q.on_readable());
  auto& maps = rig.kernel.maps[rig.be->ioas_id()];
  CHECK(maps.size() == 2);
  CHECK_FALSE(maps.count(kBase));  // coldest window gone (the fake refuses partial unmaps)
  CHECK(maps.count(kBase + 200 * kPageSize));
  CHECK(rig.ffd.answers.size() == 3);
  for (auto& a : rig.ffd.answers) CHECK(a.code == IOMMUFD_PAGE_RESP_SUCCESS);
  q.unmap_all();
  CHECK(rig.kernel.live_maps() == 0);
  CHECK(rig.acct.total() == 0);
}

TEST_CASE("queue: stops after max_reads so the event loop stays responsive, and says so") {
  Rig rig(1);
  for (uint32_t c = 1; c <= 10; ++c) rig.ffd.groups.push_back({raw(c, c)});
  FaultQueue q(rig.sys, rig.fd, rig.engine, *rig.be, {.batch_records = 2, .max_records = 16, .max_reads = 3});
  auto d = q.on_readable().value();
  CHECK(d.more);
  CHECK(d.groups == 6);
  d = q.on_readable().value();
  CHECK(d.groups == 4);
  CHECK_FALSE(d.more);
  CHECK(rig.ffd.answers.size() == 10);
}

TEST_CASE("queue: a read error other than empty is reported") {
  Rig rig;
  rig.sys.on_read([](int, void*, size_t, off_t) -> ssize_t { return -EIO; });
  FaultQueue q(rig.sys, rig.fd, rig.engine, *rig.be);
  CHECK_FALSE(q.on_readable());
}
