#include <doctest/doctest.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <utility>
#include <vector>

#include "fake_iommu.h"
#include "pinless/iommu/backend_select.h"
#include "pinless/iommu/iommufd_backend.h"
#include "pinless/iommu/pinned_region.h"

using namespace pinless;
using namespace pinless::iommu;
using pinless::testing::FakeIommufd;
using pinless::testing::FakeSys;

namespace {
const std::vector<Range<Iova>> kX86Ranges{range_from_inclusive(0, 0xfedfffff),
                                          range_from_inclusive(0xfef00000, 0x7fffffffff)};
}

TEST_CASE("pin: a region is one MAP, split only at the MSI hole") {
  FakeSys sys;
  FakeIommufd k(sys);
  auto ctx = Iommufd::open(sys).value();
  auto be = IommufdBackend::create(*ctx).value();
  PinAccounting acct;
  PinnedRegionSpec low{"low", {Gpa(0), 0xc0000000}, Hva(0x7f0000000000), Perm::kReadWrite, false, 1};
  auto r1 = PinnedRegion::create(*be, low, kX86Ranges, &acct).value();
  CHECK(r1.mappings().size() == 1);
  PinnedRegionSpec span{"span", {Gpa(0xfe000000), 0x4000000}, Hva(0x7e0000000000), Perm::kReadWrite, false, 1};
  {
    auto r2 = PinnedRegion::create(*be, span, kX86Ranges, &acct).value();
    REQUIRE(r2.mappings().size() == 2);
    CHECK(r2.mappings()[0].iova() == Iova(0xfe000000));
    CHECK(r2.mappings()[0].size() == 0xe00000);
    CHECK(r2.mappings()[1].iova() == Iova(0xfef00000));
    CHECK(r2.skipped_bytes() == 0x100000);
    CHECK(k.maps[be->ioas_id()].at(0xfef00000).va == 0x7e0000000000 + 0xf00000);
    CHECK(acct.static_bytes() == 0xc0000000 + 0x4000000 - 0x100000);
  }
  CHECK(k.live_maps() == 1);
  CHECK(acct.static_bytes() == 0xc0000000);
}

TEST_CASE("pin: a failing MAP leaves nothing mapped and nothing charged") {
  FakeSys sys;
  FakeIommufd k(sys);
  auto ctx = Iommufd::open(sys).value();
  auto be = IommufdBackend::create(*ctx).value();
  PinAccounting acct;
  PinnedRegionSpec span{"span", {Gpa(0xfe000000), 0x4000000}, Hva(0x7e0000000000), Perm::kReadWrite, false, 1};
  // The second piece collides with an existing mapping.
  REQUIRE(be->map(Iova(0xff000000), Hva(0x1000000), 0x1000, Perm::kRead));
  auto r = PinnedRegion::create(*be, span, kX86Ranges, &acct);
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("span") != std::string::npos);
  CHECK(k.live_maps() == 1);  // only the pre-existing one
  CHECK(acct.total() == 0);
}

TEST_CASE("pin: the pin limit refuses a region before mapping anything") {
  FakeSys sys;
  FakeIommufd k(sys);
  auto ctx = Iommufd::open(sys).value();
  auto be = IommufdBackend::create(*ctx).value();
  PinAccounting acct(kGiB);
  PinnedRegionSpec big{"big", {Gpa(0x100000000), 2 * kGiB}, Hva(0x7e0000000000), Perm::kReadWrite, false, 1};
  auto r = PinnedRegion::create(*be, big, kX86Ranges, &acct);
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("pin limit") != std::string::npos);
  CHECK(sys.count(IOMMU_IOAS_MAP) == 0);
}

TEST_CASE("populate: MADV_POPULATE_WRITE is split across threads; failures fall back to touching") {
  size_t size = 64 * kPageSize;
  void* mem = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(mem != MAP_FAILED);
  static_cast<uint8_t*>(mem)[5 * kPageSize] = 0xab;
  std::atomic<uint64_t> covered{0};
  std::atomic<int> calls{0};
  auto ok = populate_pages(hva_of(mem), size, 4, kPageSize, [&](void*, size_t len) {
    covered += len;
    calls++;
    return 0;
  });
  CHECK(ok.used_madvise);
  CHECK(ok.threads == 4);
  CHECK(calls == 4);
  CHECK(covered == size);
  auto fb = populate_pages(hva_of(mem), size, 3, kPageSize, [](void*, size_t) { return -EINVAL; });
  CHECK_FALSE(fb.used_madvise);
  CHECK(static_cast<uint8_t*>(mem)[5 * kPageSize] == 0xab);  // contents survive the touch
  // The real thing works on this kernel (or falls back), and never loses data.
  populate_pages(hva_of(mem), size, 2);
  CHECK(static_cast<uint8_t*>(mem)[5 * kPageSize] == 0xab);
  ::munmap(mem, size);
}

TEST_CASE("populate: thread count, automatic and explicit") {
  // Automatic: one thread per CPU, at most one per min_chunk, and no pass below two threads.
  CHECK(populate_thread_count(kGiB, 0, 8) == 8);
  CHECK(populate_thread_count(kGiB, 0, 32) == kGiB / kPopulateMinChunk);
  CHECK(populate_thread_count(kGiB, 0, 1) == 0);
  CHECK(populate_thread_count(100 * kMiB, 0, 8) == 0);
  CHECK(populate_thread_count(256 * kMiB, 0, 2, 128 * kMiB) == 2);
  CHECK(populate_thread_count(kGiB, 0, 0) == 0);
  // Explicit: as given, capped at one thread per page.
  CHECK(populate_thread_count(kGiB, 1, 8) == 1);
  CHECK(populate_thread_count(kGiB, 3, 1) == 3);
  CHECK(populate_thread_count(2 * kPageSize, 5, 8) == 2);
  CHECK(online_cpus() >= 1);
}

TEST_CASE("populate: slices cover the range once, inner cuts 2 MiB aligned") {
  std::mutex mu;
  std::vector<std::pair<uint64_t, uint64_t>> seen;
  auto record = [&](void* p, size_t len) {
    std::lock_guard lock(mu);
    seen.emplace_back(reinterpret_cast<uint64_t>(p), len);
    return 0;
  };
  // An odd size at a 4 KiB (not 2 MiB) aligned address: nothing is touched, the fake only records.
  Hva base(0x7f0000001000);
  uint64_t size = 7 * 64 * kMiB + 5 * kPageSize;
  auto r = populate_pages(base, size, 7, kPageSize, record);
  CHECK(r.threads == 7);
  std::sort(seen.begin(), seen.end());
  REQUIRE(seen.size() == 7);
  uint64_t at = base.value();
  for (size_t i = 0; i < seen.size(); ++i) {
    CHECK(seen[i].first == at);
    if (i > 0) CHECK(seen[i].first % (2 * kMiB) == 0);
    at += seen[i].second;
  }
  CHECK(at == base.value() + size);
  // Small ranges fall back to page-aligned cuts.
  seen.clear();
  CHECK(populate_pages(base, 3 * kPageSize, 3, kPageSize, record).threads == 3);
  CHECK(seen.size() == 3);
}

TEST_CASE("pin: automatic populate follows the CPU count; explicit threads always populate") {
  FakeSys sys;
  FakeIommufd k(sys);
  auto ctx = Iommufd::open(sys).value();
  auto be = IommufdBackend::create(*ctx).value();
  std::atomic<int> calls{0};
  auto count = [&](void*, size_t) {
    calls++;
    return 0;
  };
  PinnedRegionSpec spec{"ram", {Gpa(0), kGiB}, Hva(0x7f0000000000)};
  unsigned want = populate_thread_count(kGiB, 0, online_cpus());
  {
    auto r = PinnedRegion::create(*be, spec, kX86Ranges, nullptr, count).value();
    CHECK(r.populate_threads() == want);
    CHECK(calls == int(want));
    CHECK(r.map_calls() == 1);
  }
  calls = 0;
  spec.populate_threads = 1;  // the old single-threaded pre-pass
  {
    auto r = PinnedRegion::create(*be, spec, kX86Ranges, nullptr, count).value();
    CHECK(r.populate_threads() == 1);
    CHECK(calls == 1);
  }
  calls = 0;
  spec.populate = false;
  {
    auto r = PinnedRegion::create(*be, spec, kX86Ranges, nullptr, count).value();
    CHECK(r.populate_threads() == 0);
    CHECK(calls == 0);
    CHECK(r.mapped_bytes() == kGiB);
  }
}

TEST_CASE("backend selection") {
  BackendProbe all{true, true, true, false, "0000:00:03.0"};
  CHECK(select_backend(BackendChoice::kAuto, all).value() == BackendKind::kIommufd);
  BackendProbe no_cdev = all;
  no_cdev.device_cdev = false;
  CHECK(select_backend(BackendChoice::kAuto, no_cdev).value() == BackendKind::kType1);
  auto forced = select_backend(BackendChoice::kIommufd, no_cdev);
  REQUIRE_FALSE(forced);
  CHECK(forced.error().message().find("CONFIG_VFIO_DEVICE_CDEV") != std::string::npos);
  BackendProbe no_iommu = all;
  no_iommu.dev_iommu = false;
  CHECK(select_backend(BackendChoice::kAuto, no_iommu).value() == BackendKind::kType1);
  auto f2 = select_backend(BackendChoice::kIommufd, no_iommu);
  REQUIRE_FALSE(f2);
  CHECK(f2.error().message().find("CONFIG_IOMMUFD") != std::string::npos);
  BackendProbe passed = no_iommu;
  passed.iommufd_fd_given = true;
  CHECK(select_backend(BackendChoice::kAuto, passed).value() == BackendKind::kIommufd);
  CHECK_FALSE(select_backend(BackendChoice::kType1, passed));
  BackendProbe none{};
  auto n = select_backend(BackendChoice::kAuto, none);
  REQUIRE_FALSE(n);
  CHECK(n.error().message().find("modprobe vfio-pci") != std::string::npos);
  CHECK_FALSE(select_backend(BackendChoice::kType1, none));
  CHECK(parse_backend_choice("type1").value() == BackendChoice::kType1);
  CHECK_FALSE(parse_backend_choice("vfio"));
}

TEST_CASE("clip_to_ranges keeps the pieces inside the allowed ranges") {
  auto pieces = clip_to_ranges({Iova(0xfe000000), 0x4000000}, kX86Ranges);
  REQUIRE(pieces.size() == 2);
  CHECK(pieces[0].end() == Iova(0xfee00000));
  CHECK(pieces[1].start == Iova(0xfef00000));
  CHECK(pieces[1].end() == Iova(0x102000000));
  CHECK(clip_to_ranges({Iova(0xfee00000), 0x100000}, kX86Ranges).empty());
}
