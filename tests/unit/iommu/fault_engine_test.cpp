#include <doctest/doctest.h>

#include <algorithm>
#include <set>

#include "pinless/iommu/fault_engine.h"

using namespace pinless;
using namespace pinless::iommu;

namespace {

constexpr uint64_t kBase = 0x100000;  // region: 1M .. 1M + 1M, 256 pages
constexpr uint64_t kHva = 0x7f0000000000;

FaultRegionSpec region(uint64_t premap, WindowPolicy policy = WindowPolicy::kForward, Perm perm = Perm::kReadWrite) {
  FaultRegionSpec s;
  s.name = "ram";
  s.gpa = {Gpa(kBase), 256 * kPageSize};
  s.hva = Hva(kHva);
  s.fault_policy.premap_pages = premap;
  s.fault_policy.window = policy;
  s.perm = perm;
  return s;
}

FaultRecord rec(uint32_t cookie, uint64_t page, bool last = true, uint32_t perm = FaultRecord::kPermWrite,
                uint32_t dev = 1) {
  FaultRecord r;
  r.flags = last ? FaultRecord::kLastPage : 0;
  r.cookie = cookie;
  r.dev_id = dev;
  r.perm = perm;
  r.addr = Iova(kBase + page * kPageSize);
  return r;
}

// Runs a batch as the FaultQueue would, with every map succeeding.
FaultPlan run(FaultEngine& e, std::vector<FaultRecord> records) {
  FaultPlan plan;
  e.plan(records, plan);
  e.finish(plan);
  return plan;
}

}  // namespace

TEST_CASE("engine: one fault maps its window IOVA = GPA with the region's host address and perms") {
  PinAccounting acct;
  FaultEngine e(acct);
  REQUIRE(e.add_region(region(16, WindowPolicy::kForward, Perm::kReadWrite)).value() == 0);
  auto plan = run(e, {rec(5, 10)});
  REQUIRE(plan.maps.size() == 1);
  CHECK(plan.maps[0].iova == Iova(kBase + 10 * kPageSize));
  CHECK(plan.maps[0].hva == Hva(kHva + 10 * kPageSize));
  CHECK(plan.maps[0].size == 16 * kPageSize);
  CHECK(plan.maps[0].perm == Perm::kReadWrite);
  REQUIRE(plan.responses.size() == 1);
  CHECK(plan.responses[0].cookie == 5);
  CHECK(plan.responses[0].code == FaultCode::kSuccess);
  CHECK(e.mapped(0).count_set() == 16);
  CHECK(acct.region_bytes(0) == 16 * kPageSize);
  CHECK(acct.devices().at(1).bytes_mapped == 16 * kPageSize);
}

TEST_CASE("engine: a page is never mapped twice; only the unmapped sub-runs of a window are mapped") {
  PinAccounting acct;
  FaultEngine e(acct);
  e.add_region(region(16)).value();
  run(e, {rec(1, 4)});    // pages 4..19
  run(e, {rec(2, 24)});   // pages 24..39
  auto plan = run(e, {rec(3, 0)});  // window 0..15: only 0..3 is unmapped
  REQUIRE(plan.maps.size() == 1);
  CHECK(plan.maps[0].first_page == 0);
  CHECK(plan.maps[0].pages == 4);
  plan = run(e, {rec(4, 18)});  // page 18 mapped already: nothing to map, still SUCCESS
  CHECK(plan.maps.empty());
  CHECK(plan.responses[0].code == FaultCode::kSuccess);
  plan = run(e, {rec(5, 19 + 1)});  // window 20..35: 20..23 free, 24..35 mapped
  REQUIRE(plan.maps.size() == 1);
  CHECK(plan.maps[0].first_page == 20);
  CHECK(plan.maps[0].pages == 4);
  CHECK(e.mapped(0).count_set() == 40);
  CHECK(acct.fault_bytes() == 40 * kPageSize);
}

TEST_CASE("engine: a batch of concurrent faults is coalesced into the fewest MAP calls, one response per group") {
  PinAccounting acct;
  FaultEngine e(acct);
  e.add_region(region(8)).value();
  // Four groups: 7 (two records), 8, 9 (same window as 8), 10 (adjacent window, out of order).
  auto plan = run(e, {rec(7, 0, false), rec(7, 1, true), rec(8, 16), rec(9, 20), rec(10, 8)});
  // Windows 0..7 (+1 is inside), 16..23 (20 inside), 8..15: all adjacent -> one MAP of 24 pages.
  REQUIRE(plan.maps.size() == 1);
  CHECK(plan.maps[0].first_page == 0);
  CHECK(plan.maps[0].pages == 24);
  std::vector<uint32_t> cookies;
  for (auto& r : plan.responses) {
    cookies.push_back(r.cookie);
    CHECK(r.code == FaultCode::kSuccess);
  }
  CHECK(cookies == std::vector<uint32_t>{7, 8, 9, 10});
  CHECK(e.window_count() == 1);  // reclaimed as one unit later, matching the one MAP
  CHECK(e.stats().groups == 4);
  CHECK(e.stats().records == 5);
}

TEST_CASE("engine: a group ends at LAST_PAGE even if the next group reuses nothing but the cookie") {
  PinAccounting acct;
  FaultEngine e(acct);
  e.add_region(region(1)).value();
  auto plan = run(e, {rec(3, 0, true), rec(3, 1, true)});
  CHECK(plan.responses.size() == 2);
}

TEST_CASE("engine: faults outside every region or with a forbidden permission are INVALID and map nothing") {
  PinAccounting acct;
  FaultEngine e(acct);
  e.add_region(region(4, WindowPolicy::kForward, Perm::kRead)).value();
  FaultRecord outside = rec(1, 0);
  outside.addr = Iova(0xfee00000);
  FaultRecord below = rec(2, 0, true, FaultRecord::kPermRead);
  below.addr = Iova(kBase - 1);
  FaultRecord write = rec(3, 5, true, FaultRecord::kPermWrite);
  FaultRecord read = rec(4, 5, true, FaultRecord::kPermRead);
  auto plan = run(e, {outside, below, write});
  CHECK(plan.maps.empty());
  REQUIRE(plan.responses.size() == 3);
  for (auto& r : plan.responses) CHECK(r.code == FaultCode::kInvalid);
  CHECK(e.mapped(0).count_set() == 0);
  plan = run(e, {read});
  CHECK(plan.responses[0].code == FaultCode::kSuccess);
  CHECK(plan.maps[0].perm == Perm::kRead);
  CHECK(acct.devices().at(1).invalid == 3);
}

TEST_CASE("engine: one bad record makes its whole group INVALID") {
  PinAccounting acct;
  FaultEngine e(acct);
  e.add_region(region(1)).value();
  FaultRecord bad = rec(6, 0, true);
  bad.addr = Iova(0x10);
  auto plan = run(e, {rec(6, 3, false), bad, rec(7, 9)});
  REQUIRE(plan.responses.size() == 2);
  CHECK(plan.responses[0].code == FaultCode::kInvalid);
  CHECK(plan.responses[1].code == FaultCode::kSuccess);
}

TEST_CASE("engine: a failed MAP rolls back bits and charge, and its groups become INVALID") {
  PinAccounting acct;
  FaultEngine e(acct);
  e.add_region(region(4)).value();
  FaultPlan plan;
  std::vector<FaultRecord> batch{rec(1, 0), rec(2, 100)};
  e.plan(batch, plan);
  REQUIRE(plan.maps.size() == 2);
  e.map_failed(plan.maps[1]);
  e.finish(plan);
  CHECK(plan.responses[0].code == FaultCode::kSuccess);
  CHECK(plan.responses[1].code == FaultCode::kInvalid);
  CHECK(e.mapped(0).count_set() == 4);
  CHECK(acct.fault_bytes() == 4 * kPageSize);
  CHECK(e.window_count() == 1);
  // The page faults again later and is mapped then.
  auto again = run(e, {rec(3, 100)});
  CHECK(again.maps.size() == 1);
  CHECK(again.responses[0].code == FaultCode::kSuccess);
}

TEST_CASE("engine: over the pin limit, the least recently faulted window is reclaimed first") {
  PinAccounting acct(12 * kPageSize);
  FaultEngine e(acct);
  e.set_reclaim(true);
  e.add_region(region(4)).value();
  run(e, {rec(1, 0)});   // A: 0..3
  run(e, {rec(2, 10)});  // B: 10..13
  run(e, {rec(3, 20)});  // C: 20..23 -> at the limit
  run(e, {rec(4, 1)});   // touch A: now B is the coldest
  auto plan = run(e, {rec(5, 30)});
  REQUIRE(plan.unmaps.size() == 1);
  CHECK(plan.unmaps[0].first_page == 10);
  CHECK(plan.unmaps[0].size == 4 * kPageSize);
  REQUIRE(plan.maps.size() == 1);
  CHECK(plan.maps[0].first_page == 30);
  CHECK(plan.responses[0].code == FaultCode::kSuccess);
  CHECK(acct.total() == 12 * kPageSize);
  CHECK_FALSE(e.mapped(0).test(10));
  CHECK(e.stats().reclaims == 1);
  // The reclaimed page faults again when the device touches it.
  plan = run(e, {rec(6, 11)});
  CHECK(plan.maps.size() == 1);
  CHECK(plan.unmaps.size() == 1);
  CHECK(plan.unmaps[0].first_page == 20);  // C is now the coldest
}

TEST_CASE("engine: when nothing cold is left the window shrinks to what fits, then INVALID") {
  PinAccounting acct(5 * kPageSize);
  acct.charge_static(2 * kPageSize);  // statically pinned RAM counts toward the cap
  FaultEngine e(acct);
  e.set_reclaim(true);
  e.add_region(region(4)).value();
  // The first window wants 4 pages, 3 fit; the second group finds no room, and windows
  // faulted in this same batch are never reclaimed for it.
  auto plan = run(e, {rec(1, 0), rec(2, 50)});
  REQUIRE(plan.responses.size() == 2);
  CHECK(plan.responses[0].code == FaultCode::kSuccess);
  CHECK(plan.responses[1].code == FaultCode::kInvalid);
  CHECK(acct.total() == 5 * kPageSize);
  CHECK(e.mapped(0).all_set(0, 3));
  CHECK_FALSE(e.mapped(0).test(3));
  CHECK_FALSE(e.mapped(0).test(50));
  CHECK(e.stats().over_limit == 1);
  // Next batch: the old window is cold now and makes room.
  plan = run(e, {rec(3, 50)});
  REQUIRE(plan.unmaps.size() == 1);
  CHECK(plan.unmaps[0].first_page == 0);
  CHECK(plan.responses[0].code == FaultCode::kSuccess);
  CHECK(e.mapped(0).test(50));
  CHECK(acct.total() <= 5 * kPageSize);
}

TEST_CASE("engine: regions must be aligned and disjoint") {
  PinAccounting acct;
  FaultEngine e(acct);
  auto s = region(1);
  REQUIRE(e.add_region(s));
  CHECK_FALSE(e.add_region(s));  // overlap
  s.gpa = {Gpa(0x40000123), kPageSize};
  CHECK_FALSE(e.add_region(s));
  s.gpa = {Gpa(0x40000000), kPageSize};
  s.fault_policy.premap_pages = 0;
  CHECK_FALSE(e.add_region(s));
}

TEST_CASE("engine: take_all_windows returns every mapped window exactly and releases the charge") {
  PinAccounting acct;
  FaultEngine e(acct);
  e.add_region(region(2)).value();
  run(e, {rec(1, 0), rec(2, 9)});
  auto runs = e.take_all_windows();
  CHECK(runs.size() == 2);
  CHECK(acct.fault_bytes() == 0);
  CHECK(e.mapped(0).count_set() == 0);
}

TEST_CASE("engine: with reclaim off (the default) a fault over the pin limit is INVALID and nothing is unmapped") {
  PinAccounting acct(8 * kPageSize);
  FaultEngine e(acct);
  e.add_region(region(4)).value();
  run(e, {rec(1, 0)});
  run(e, {rec(2, 10)});  // at the limit
  CHECK(e.stats().maps == 2);  // one MAP call per window
  auto plan = run(e, {rec(3, 20)});
  CHECK(plan.unmaps.empty());
  CHECK(plan.maps.empty());
  CHECK(plan.responses[0].code == FaultCode::kInvalid);
  CHECK(acct.total() == 8 * kPageSize);
  CHECK(e.stats().reclaims == 0);
  CHECK(e.stats().over_limit == 1);
}

TEST_CASE("engine: a policy change applies to the next fault; windows mapped before stay") {
  PinAccounting acct;
  FaultEngine e(acct);
  REQUIRE(e.add_region(region(1, WindowPolicy::kForward)).has_value());
  auto before = run(e, {rec(1, 10)});
  REQUIRE(before.maps.size() == 1);
  CHECK(before.maps[0].size == kPageSize);
  FaultPolicy p;
  p.premap_pages = 16;
  p.window = WindowPolicy::kAligned;
  REQUIRE(e.set_policy(0, p).has_value());
  CHECK(e.region(0).fault_policy.premap_pages == 16);
  auto after = run(e, {rec(2, 37)});
  REQUIRE(after.maps.size() == 1);
  CHECK(after.maps[0].iova == Iova(kBase + 32 * kPageSize));  // the aligned 16-page block of page 37
  CHECK(after.maps[0].size == 16 * kPageSize);
  CHECK(e.mapped(0).test(10));  // the earlier window is still mapped
  FaultPolicy bad = p;
  bad.premap_pages = 0;
  CHECK_FALSE(e.set_policy(0, bad).has_value());
  bad.premap_pages = kMaxPremapPages + 1;
  CHECK_FALSE(e.set_policy(0, bad).has_value());
  bad = p;
  bad.max_hint_pages = 0;
  CHECK_FALSE(e.set_policy(0, bad).has_value());
  CHECK_FALSE(e.set_policy(1, p).has_value());  // no such region
  CHECK(e.region(0).fault_policy.premap_pages == 16);  // refused changes changed nothing
}

TEST_CASE("engine: per-region counters; one region's windows taken, pinned, then faultable again") {
  PinAccounting acct;
  FaultEngine e(acct);
  REQUIRE(e.add_region(region(4)).value() == 0);
  FaultRegionSpec second = region(4);
  second.name = "ram2";
  second.gpa.start = Gpa(kBase + 256 * kPageSize);
  second.hva = Hva(kHva + 256 * kPageSize);
  REQUIRE(e.add_region(second).value() == 1);
  auto plan = run(e, {rec(1, 0), rec(2, 100), rec(3, 256 + 8), rec(4, 600)});
  REQUIRE(plan.maps.size() == 3);
  for (const auto& m : plan.maps) e.note_map(m, 1000);
  CHECK(e.region_stats(0).records == 2);
  CHECK(e.region_stats(0).pages_mapped == 8);
  CHECK(e.region_stats(0).map_calls == 2);
  CHECK(e.region_stats(0).map_ns == 2000);
  CHECK(e.region_stats(1).records == 1);
  CHECK(e.region_stats(1).invalid == 0);
  CHECK(e.windows_in(0) == 2);
  CHECK(e.windows_in(1) == 1);
  CHECK(plan.responses[3].code == FaultCode::kInvalid);  // page 600 is outside both regions

  auto runs = e.take_windows(0);
  CHECK(runs.size() == 2);
  CHECK(e.windows_in(0) == 0);
  CHECK(e.windows_in(1) == 1);  // the other region's window stays
  CHECK(acct.region_bytes(0) == 0);
  CHECK(acct.region_bytes(1) == 4 * kPageSize);

  // Pinned whole by its owner: a fault there maps nothing and is answered SUCCESS.
  e.set_pinned(0, true);
  CHECK(e.pinned(0));
  plan = run(e, {rec(5, 200)});
  CHECK(plan.maps.empty());
  CHECK(plan.responses[0].code == FaultCode::kSuccess);
  CHECK(acct.region_bytes(0) == 0);

  // Faultable again: faults map windows once more.
  e.set_pinned(0, false);
  plan = run(e, {rec(6, 200)});
  REQUIRE(plan.maps.size() == 1);
  CHECK(plan.maps[0].iova == Iova(kBase + 200 * kPageSize));
  CHECK(e.region_stats(0).records == 4);
}

TEST_CASE("engine: reclaim spares windows inside the one being planned, so the pin limit holds") {
  // Found by the fault_records fuzz target (corpus: reclaim-inside-window-over-limit). The
  // window 4..7 used to be reclaimed to make room for 0..3, then mapped again with them as
  // part of 0..7: 12 pages under an 8-page limit.
  PinAccounting acct(8 * kPageSize);
  FaultEngine e(acct);
  e.set_reclaim(true);
  e.add_region(region(4)).value();
  run(e, {rec(1, 4)});   // 4..7
  run(e, {rec(2, 20)});  // 20..23: at the limit
  REQUIRE(e.set_policy(0, {8, WindowPolicy::kAligned, 512}));
  auto plan = run(e, {rec(3, 0)});  // window 0..7: 0..3 need room, 4..7 is the coldest
  CHECK(acct.total() <= 8 * kPageSize);
  REQUIRE(plan.unmaps.size() == 1);
  CHECK(plan.unmaps[0].first_page == 20);
  REQUIRE(plan.maps.size() == 1);
  CHECK(plan.maps[0].first_page == 0);
  CHECK(plan.maps[0].pages == 4);
  CHECK(plan.responses[0].code == FaultCode::kSuccess);
  CHECK(e.mapped(0).all_set(0, 8));
}

TEST_CASE("engine: a failed reclaim UNMAP keeps its window and trims the maps planned over it") {
  // Found by the fault_records fuzz target (corpus: unmap-failed-window-replanned). The kept
  // window used to be forgotten when a later fault of the batch had planned over its pages:
  // that MAP failed with EEXIST and was rolled back, leaving the host with a mapping the engine
  // neither counted nor would ever unmap.
  PinAccounting acct(8 * kPageSize);
  FaultEngine e(acct);
  e.set_reclaim(true);
  e.add_region(region(4)).value();
  run(e, {rec(1, 0)});   // W: 0..3
  run(e, {rec(2, 20)});  // 20..23: at the limit
  FaultPlan plan;
  std::vector<FaultRecord> batch{rec(3, 40), rec(4, 2)};
  e.plan(batch, plan);  // 40 reclaims W, then 2 reclaims 20..23 and plans 2..5 over W's pages
  REQUIRE(plan.unmaps.size() == 2);
  REQUIRE(plan.unmaps[0].first_page == 0);
  REQUIRE(plan.maps.size() == 2);
  e.unmap_failed(plan.unmaps[0], plan);
  // 2..5 loses W's pages; W back (10 pages charged) is over the limit, so 40..43 is given up.
  REQUIRE(plan.maps.size() == 1);
  CHECK(plan.maps[0].first_page == 4);
  CHECK(plan.maps[0].pages == 2);
  e.finish(plan);
  CHECK(plan.responses[0].code == FaultCode::kInvalid);
  CHECK(plan.responses[1].code == FaultCode::kSuccess);  // page 2 is in W, still mapped
  CHECK(acct.total() == 6 * kPageSize);
  CHECK(e.mapped(0).count_set() == 6);
  CHECK(e.mapped(0).all_set(0, 6));
  CHECK(e.window_count() == 2);
  // Teardown unmaps exactly what the host holds: W and 4..5.
  auto runs = e.take_all_windows();
  std::sort(runs.begin(), runs.end(), [](const DmaRun& a, const DmaRun& b) { return a.first_page < b.first_page; });
  REQUIRE(runs.size() == 2);
  CHECK((runs[0].first_page == 0 && runs[0].pages == 4));
  CHECK((runs[1].first_page == 4 && runs[1].pages == 2));
}
