#include <doctest/doctest.h>

#include "pinless/iommu/fault_engine.h"
#include "pinless/iommu/fault_window.h"
#include "pinless/iommu/page_bitmap.h"

using namespace pinless::iommu;

TEST_CASE("window: forward takes N pages from the fault page, clipped at the region end") {
  WindowParams p{{16, WindowPolicy::kForward, 512}, 4096};
  CHECK(compute_window(p, 0x100000, 100, 0, 0, 0) == PageSpan{0, 16});
  CHECK(compute_window(p, 0x100000, 100, 90, 0, 0) == PageSpan{90, 10});
  CHECK(compute_window(p, 0x100000, 100, 99, 0, 0) == PageSpan{99, 1});
  p.fault_policy.premap_pages = 1;
  CHECK(compute_window(p, 0x100000, 100, 42, 0, 0) == PageSpan{42, 1});
}

TEST_CASE("window: aligned takes the naturally aligned block in IOVA space") {
  WindowParams p{{512, WindowPolicy::kAligned, 512}, 4096};
  // Region starts at 2M: page 700 is IOVA 2M + 700*4K, inside the 2M block [4M, 6M) = pages 512..1023.
  CHECK(compute_window(p, 0x200000, 2048, 700, 0, 0) == PageSpan{512, 512});
  // Region starting at 1M (not 2M aligned): the first block is clipped at the region start.
  CHECK(compute_window(p, 0x100000, 2048, 10, 0, 0) == PageSpan{0, 256});
  // And at the region end.
  CHECK(compute_window(p, 0x200000, 600, 599, 0, 0) == PageSpan{512, 88});
  // Non-power-of-two N still aligns to multiples of N pages.
  p.fault_policy.premap_pages = 3;
  CHECK(compute_window(p, 0, 100, 7, 0, 0) == PageSpan{6, 3});
}

TEST_CASE("window: hint uses the record length, falls back to forward, and is capped") {
  WindowParams p{{4, WindowPolicy::kHint, 8}, 4096};
  CHECK(compute_window(p, 0, 100, 10, 0, 0) == PageSpan{10, 4});           // no hint: forward
  CHECK(compute_window(p, 0, 100, 10, 0, 4096 * 2) == PageSpan{10, 2});    // 8K from page start
  CHECK(compute_window(p, 0, 100, 10, 0xffc, 8) == PageSpan{10, 2});       // crosses a page boundary
  CHECK(compute_window(p, 0, 100, 10, 0, 1u << 30) == PageSpan{10, 8});    // device asks for 1G: capped
  CHECK(compute_window(p, 0, 12, 10, 0, 4096 * 6) == PageSpan{10, 2});     // clipped at region end
}

TEST_CASE("window: one set of defaults: 512 pages, aligned, hints capped at 512") {
  WindowParams p;
  CHECK(p.fault_policy.premap_pages == kDefaultPremapPages);
  CHECK(p.fault_policy.window == WindowPolicy::kAligned);
  CHECK(p.fault_policy.max_hint_pages == 512);
  CHECK(FaultRegionSpec{}.fault_policy.premap_pages == kDefaultPremapPages);
  CHECK(FaultRegionSpec{}.fault_policy.window == WindowPolicy::kAligned);
  CHECK_FALSE(DmaPolicy{}.reclaim);
}

TEST_CASE("window: policy names parse") {
  CHECK(parse_window_policy("aligned").value() == WindowPolicy::kAligned);
  CHECK_FALSE(parse_window_policy("backward"));
}

TEST_CASE("bitmap: set/clear count exactly and runs are found across word boundaries") {
  PageBitmap b(200);
  b.set(60, 10);
  b.set(65, 10);  // overlaps: counted once
  CHECK(b.count_set() == 15);
  CHECK(b.test(60));
  CHECK(b.test(74));
  CHECK_FALSE(b.test(75));
  CHECK(b.all_set(60, 15));
  CHECK_FALSE(b.all_set(59, 2));
  b.set(128, 1);
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  b.for_each_clear_run(50, 100, [&](uint64_t f, uint64_t n) { runs.emplace_back(f, n); });
  CHECK(runs == std::vector<std::pair<uint64_t, uint64_t>>{{50, 10}, {75, 53}, {129, 21}});
  b.clear(0, 200);
  CHECK(b.count_set() == 0);
  CHECK(b.next_set(0, 200) == 200);
  CHECK(b.next_clear(0, 200) == 0);
  b.set(0, 200);
  CHECK(b.next_clear(0, 200) == 200);
  runs.clear();
  b.for_each_clear_run(0, 200, [&](uint64_t f, uint64_t n) { runs.emplace_back(f, n); });
  CHECK(runs.empty());
}
