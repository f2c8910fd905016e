#include <doctest/doctest.h>

#include "fake_iommu.h"
#include "pinless/iommu/dma_errors.h"
#include "pinless/iommu/dma_mapping.h"
#include "pinless/iommu/iommufd.h"
#include "pinless/iommu/iommufd_backend.h"

using namespace pinless;
using namespace pinless::iommu;
using pinless::testing::FakeIommufd;
using pinless::testing::FakeSys;

TEST_CASE("iommufd: missing /dev/iommu names CONFIG_IOMMUFD and the type1 fallback") {
  FakeSys sys;
  auto ctx = Iommufd::open(sys);
  REQUIRE_FALSE(ctx);
  CHECK(ctx.error().err() == ENOENT);
  CHECK(ctx.error().message().find("CONFIG_IOMMUFD") != std::string::npos);
  CHECK(ctx.error().message().find("--iommu-backend=type1") != std::string::npos);
}

TEST_CASE("iommufd: IOAS is destroyed and the fd closed when the owners go away") {
  FakeSys sys;
  FakeIommufd k(sys);
  {
    auto ctx = Iommufd::open(sys).value();
    auto be = IommufdBackend::create(*ctx).value();
    CHECK(k.live_objects() == 1);
    CHECK(k.objects.at(be->ioas_id()) == "ioas");
    CHECK(sys.open_fds() == 1);
  }
  CHECK(k.live_objects() == 0);
  CHECK(sys.open_fds() == 0);
}

TEST_CASE("iommufd: MAP passes FIXED_IOVA, permissions, address and length; UNMAP the same range") {
  FakeSys sys;
  FakeIommufd k(sys);
  auto ctx = Iommufd::open(sys).value();
  auto be = IommufdBackend::create(*ctx).value();
  REQUIRE(be->map(Iova(0x100000), Hva(0x7f0000200000), 0x4000, Perm::kRead));
  CHECK(k.last_map.size == sizeof(iommu_ioas_map));
  CHECK(k.last_map.flags == (IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE));
  CHECK(k.last_map.ioas_id == be->ioas_id());
  CHECK(k.last_map.iova == 0x100000);
  CHECK(k.last_map.user_va == 0x7f0000200000);
  CHECK(k.last_map.length == 0x4000);
  REQUIRE(be->map(Iova(0x200000), Hva(0x7f0000300000), 0x1000, Perm::kReadWrite));
  CHECK(k.last_map.flags == (IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE));
  CHECK(be->mapped_bytes() == 0x5000);
  // Mapping over an existing range is refused by the kernel, and reported.
  auto again = be->map(Iova(0x101000), Hva(0x7f0000200000), 0x1000, Perm::kRead);
  REQUIRE_FALSE(again);
  CHECK(again.error().err() == EEXIST);
  REQUIRE(be->unmap(Iova(0x100000), 0x4000));
  CHECK(be->mapped_bytes() == 0x1000);
  CHECK(k.live_maps() == 1);
}

TEST_CASE("iommufd: ENOMEM from MAP explains RLIMIT_MEMLOCK and per-user accounting") {
  FakeSys sys;
  FakeIommufd k(sys);
  auto ctx = Iommufd::open(sys).value();
  auto be = IommufdBackend::create(*ctx).value();
  REQUIRE(be->map(Iova(0), Hva(0x10000000), 64 * kMiB, Perm::kReadWrite));
  k.fail_next(IOMMU_IOAS_MAP, ENOMEM);
  auto r = be->map(Iova(1 * kGiB), Hva(0x20000000), 1 * kGiB, Perm::kReadWrite);
  REQUIRE_FALSE(r);
  std::string m = r.error().message();
  CHECK(r.error().err() == ENOMEM);
  CHECK(m.find("1088M") != std::string::npos);  // 64M already pinned + 1G requested
  CHECK(m.find("ulimit -l 1114112") != std::string::npos);
  CHECK(m.find("prlimit") != std::string::npos);
  CHECK(m.find("CAP_IPC_LOCK") != std::string::npos);
  CHECK(m.find("IOMMU_OPTION_RLIMIT_MODE") != std::string::npos);
  CHECK(m.find("0x40000000-0x7fffffff") != std::string::npos);
}

TEST_CASE("iommufd: IOVA_RANGES retries with the count the kernel returned on EMSGSIZE") {
  FakeSys sys;
  FakeIommufd k(sys);
  k.ranges.clear();
  for (uint64_t i = 0; i < 11; ++i) k.ranges.push_back({i * 0x100000, i * 0x100000 + 0xfffff});
  k.ranges.push_back({0xfef00000, ~uint64_t{0}});
  auto ctx = Iommufd::open(sys).value();
  auto be = IommufdBackend::create(*ctx).value();
  auto r = be->iova_ranges();
  REQUIRE(r);
  CHECK(k.range_calls == 2);
  REQUIRE(r->size() == 12);
  CHECK((*r)[3].start == Iova(0x300000));
  CHECK((*r)[3].size == 0x100000);
  CHECK((*r)[11].end() == Iova(~uint64_t{0}));  // the last byte of 2^64 is clipped
}

TEST_CASE("iommufd: IOVA_RANGES gives up when the kernel returns EMSGSIZE without a larger count") {
  FakeSys sys;
  FakeIommufd k(sys);
  auto ctx = Iommufd::open(sys).value();
  auto be = IommufdBackend::create(*ctx).value();
  k.fail_next(IOMMU_IOAS_IOVA_RANGES, EMSGSIZE);
  CHECK_FALSE(be->iova_ranges());
}

TEST_CASE("iommufd: options: RLIMIT mode is global, HUGE_PAGES per IOAS") {
  FakeSys sys;
  FakeIommufd k(sys);
  auto ctx = Iommufd::open(sys).value();
  CHECK(ctx->rlimit_mode().value() == RlimitMode::kPerUser);
  CHECK(k.last_option.op == IOMMU_OPTION_OP_GET);
  CHECK(k.last_option.option_id == IOMMU_OPTION_RLIMIT_MODE);
  CHECK(k.last_option.object_id == 0);
  REQUIRE(ctx->set_rlimit_mode(RlimitMode::kPerProcess));
  CHECK(ctx->rlimit_mode().value() == RlimitMode::kPerProcess);
  auto be = IommufdBackend::create(*ctx).value();
  REQUIRE(be->set_huge_pages(false));
  CHECK(k.last_option.op == IOMMU_OPTION_OP_SET);
  CHECK(k.last_option.option_id == IOMMU_OPTION_HUGE_PAGES);
  CHECK(k.last_option.object_id == be->ioas_id());
  CHECK(k.last_option.val64 == 0);
  k.fail_next(IOMMU_OPTION, EBUSY);
  auto busy = ctx->set_rlimit_mode(RlimitMode::kPerUser);
  REQUIRE_FALSE(busy);
  CHECK(busy.error().message().find("before allocating any IOAS") != std::string::npos);
}

TEST_CASE("iommufd: adopting a passed fd checks that it is an iommufd and owns it") {
  FakeSys sys;
  FakeIommufd k(sys);
  int fd = sys.new_fd();
  {
    auto ctx = Iommufd::adopt(sys, fd);
    REQUIRE(ctx);
    CHECK((*ctx)->fd() == fd);
  }
  CHECK(sys.open_fds() == 0);
  int other = sys.new_fd();
  k.fail_next(IOMMU_OPTION, ENOTTY);
  auto bad = Iommufd::adopt(sys, other);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message().find("--iommufd-fd") != std::string::npos);
  CHECK(sys.open_fds() == 0);  // closed on failure too
}

TEST_CASE("iommufd: fault HWPT allocation sets FAULT_ID_VALID and the fault id; teardown order holds") {
  FakeSys sys;
  FakeIommufd k(sys);
  auto ctx = Iommufd::open(sys).value();
  {
    auto be = IommufdBackend::create(*ctx).value();
    auto fault = ctx->fault_queue_alloc().value();
    CHECK(fault.fd.valid());
    auto hwpt = ctx->hwpt_alloc(7, be->ioas_id(), 0, fault.id()).value();
    CHECK(k.last_hwpt.size == sizeof(iommu_hwpt_alloc));
    CHECK(k.last_hwpt.flags == IOMMU_HWPT_FAULT_ID_VALID);
    CHECK(k.last_hwpt.fault_id == fault.id());
    CHECK(k.last_hwpt.dev_id == 7);
    CHECK(k.last_hwpt.pt_id == be->ioas_id());
    CHECK(k.last_hwpt.data_type == IOMMU_HWPT_DATA_NONE);
    auto plain = ctx->hwpt_alloc(7, be->ioas_id()).value();
    CHECK(k.last_hwpt.flags == 0);
    CHECK(k.live_objects() == 4);
  }
  // The fault fd closed before its object was destroyed (the fake refuses EBUSY otherwise).
  CHECK(k.live_objects() == 0);
  CHECK(sys.open_fds() == 1);  // only the iommufd itself
}

TEST_CASE("iommufd: COPY passes both IOAS ids; any part of a source mapping, not a hole") {
  FakeSys sys;
  FakeIommufd k(sys);
  auto ctx = Iommufd::open(sys).value();
  auto a = IommufdBackend::create(*ctx).value();
  auto b = IommufdBackend::create(*ctx).value();
  REQUIRE(a->map(Iova(0x100000), Hva(0x7f0000000000), 0x200000, Perm::kReadWrite));
  REQUIRE(b->copy_from(*a, Iova(0x100000), Iova(0x900000), 0x200000, Perm::kRead));
  CHECK(k.maps[b->ioas_id()].at(0x900000).va == 0x7f0000000000);
  // A page from the middle of the source mapping (the kernel's copy_sweep selftest does this).
  REQUIRE(b->copy_from(*a, Iova(0x101000), Iova(0xc00000), 0x1000, Perm::kRead));
  CHECK(k.maps[b->ioas_id()].at(0xc00000).va == 0x7f0000001000);
  auto hole = b->copy_from(*a, Iova(0x2ff000), Iova(0xd00000), 0x2000, Perm::kRead);  // runs past the mapping
  REQUIRE_FALSE(hole);
  CHECK(hole.error().err() == ENOENT);
  auto taken = b->copy_from(*a, Iova(0x100000), Iova(0x901000), 0x1000, Perm::kRead);  // over the first copy
  REQUIRE_FALSE(taken);
  CHECK(taken.error().err() == EEXIST);
  CHECK(b->mapped_bytes() == 0x201000);
}

TEST_CASE("DmaMapping unmaps on scope exit, so a failed multi-step setup rolls back") {
  FakeSys sys;
  FakeIommufd k(sys);
  auto ctx = Iommufd::open(sys).value();
  auto be = IommufdBackend::create(*ctx).value();
  auto setup = [&]() -> Status {
    auto m1 = PINLESS_TRY(DmaMapping::create(*be, Iova(0), Hva(0x10000), 0x1000, Perm::kRead));
    auto m2 = PINLESS_TRY(DmaMapping::create(*be, Iova(0x1000), Hva(0x20000), 0x1000, Perm::kRead));
    CHECK(k.live_maps() == 2);
    return fail("later step", EIO);
  };
  CHECK_FALSE(setup());
  CHECK(k.live_maps() == 0);
  CHECK(be->mapped_bytes() == 0);
}

TEST_CASE("fault capability errors map to typed reasons") {
  auto old = classify_fault_hwpt_alloc(Error("IOMMU_HWPT_ALLOC", EOPNOTSUPP));
  CHECK(old.reason == FaultUnsupported::kKernelTooOld);
  CHECK(old.error.message().find("6.13") != std::string::npos);
  CHECK(old.error.message().find("--dma-fallback") != std::string::npos);
  CHECK(classify_fault_attach(Error("VFIO_DEVICE_ATTACH_IOMMUFD_PT", ENODEV), "0000:00:03.0").reason ==
        FaultUnsupported::kNoPri);
  CHECK(classify_fault_attach(Error("VFIO_DEVICE_ATTACH_IOMMUFD_PT", EINVAL), "x").reason == FaultUnsupported::kOther);
  CHECK(classify_fault_queue_alloc(Error("IOMMU_FAULT_QUEUE_ALLOC", ENOTTY)).reason == FaultUnsupported::kNoFaultQueue);
  CHECK(classify_fault_hwpt_alloc(Error("IOMMU_HWPT_ALLOC", EINVAL)).reason == FaultUnsupported::kOther);
}
