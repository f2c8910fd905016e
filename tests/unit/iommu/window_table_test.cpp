#include <doctest/doctest.h>

#include <vector>

#include "pinless/iommu/window_table.h"

using namespace pinless::iommu;

TEST_CASE("window table: lookup by start and by contained page, across chunk boundaries") {
  WindowTable t;
  t.add_region(4096);
  t.add_region(64);
  uint32_t a = t.insert(0, 10, 5, 1);
  uint32_t b = t.insert(0, 510, 4, 1);  // spans the 512-page chunk boundary
  uint32_t c = t.insert(1, 0, 64, 1);   // same page number, other region
  CHECK(t.find(0, 10) == a);
  CHECK(t.find(0, 11) == WindowTable::kNil);
  CHECK(t.containing(0, 14) == a);
  CHECK(t.containing(0, 15) == WindowTable::kNil);
  CHECK(t.containing(0, 9) == WindowTable::kNil);
  CHECK(t.containing(0, 513) == b);
  CHECK(t.containing(0, 514) == WindowTable::kNil);
  CHECK(t.containing(1, 63) == c);
  CHECK(t.containing(0, 4095) == WindowTable::kNil);  // last window ends long before
  CHECK(t.size() == 3);
}

TEST_CASE("window table: LRU order follows touches; erase and slot reuse keep it consistent") {
  WindowTable t;
  t.add_region(1024);
  uint32_t a = t.insert(0, 0, 1, 1);
  uint32_t b = t.insert(0, 100, 1, 2);
  uint32_t c = t.insert(0, 200, 1, 3);
  CHECK(t.coldest() == a);
  t.touch(a, 4);
  CHECK(t.coldest() == b);
  t.erase(b);
  CHECK(t.coldest() == c);
  CHECK(t.find(0, 100) == WindowTable::kNil);
  CHECK(t.containing(0, 100) == WindowTable::kNil);
  uint32_t d = t.insert(0, 300, 2, 5);
  CHECK(d == b);  // slot reused
  std::vector<uint64_t> order;
  t.for_each([&](const WindowTable::Window& w) { order.push_back(w.first); });
  CHECK(order == std::vector<uint64_t>{200, 0, 300});
  t.grow(d, 3);
  CHECK(t.containing(0, 304) == d);
  t.clear();
  CHECK(t.size() == 0);
  CHECK(t.coldest() == WindowTable::kNil);
  CHECK(t.containing(0, 0) == WindowTable::kNil);
}

TEST_CASE("window table: thousands of windows span several slab chunks; windows never move, clear reuses them") {
  WindowTable t;
  t.add_region(8192);
  std::vector<uint32_t> ids;
  for (uint64_t p = 0; p < 3000; ++p) ids.push_back(t.insert(0, p * 2, 1, p));
  const WindowTable::Window* first = &t[ids[0]];
  for (uint64_t p = 3000; p < 4000; ++p) ids.push_back(t.insert(0, p * 2, 1, p));
  CHECK(&t[ids[0]] == first);  // growing the table did not move existing windows
  CHECK(t.size() == 4000);
  for (uint64_t p = 0; p < 4000; ++p) {
    REQUIRE(t.find(0, p * 2) == ids[p]);
    CHECK(t[ids[p]].batch == p);
    CHECK(t.containing(0, p * 2 + 1) == WindowTable::kNil);
  }
  // Coldest first: insertion order, across chunk boundaries.
  uint64_t expect = 0;
  bool ordered = true;
  t.for_each([&](const WindowTable::Window& w) { ordered = ordered && w.first == expect * 2; ++expect; });
  CHECK(ordered);
  CHECK(expect == 4000);
  t.erase(ids[300]);  // in the second chunk
  t.touch(ids[0], 9999);
  CHECK(t[t.coldest()].first == 2);
  t.clear();
  CHECK(t.size() == 0);
  CHECK(t.coldest() == WindowTable::kNil);
  uint32_t again = t.insert(0, 100, 3, 1);
  CHECK(t.containing(0, 102) == again);
  CHECK(t.find(0, 0) == WindowTable::kNil);
}
