// fault_engine_mock: one function per proof (see fault_engine_mock.cpp for the list).
#include <sys/mman.h>
#include <sys/resource.h>

#include <atomic>
#include <thread>

#include "fault_engine_mock.h"

namespace pinless::testbed::engine_mock {

using namespace pinless::iommu;

// Sequential touch of [kSeqGpa, +4 MiB) in 4 KiB steps; a page faults only if the mock page
// table does not translate it.
void sequential(DmaBackend& backend, WindowPolicy policy, uint64_t premap) {
  Rig rig(backend, premap, policy);
  const uint64_t pages = kSeqBytes / kPage;
  uint64_t faults = 0, pin_checks = 0, first_window_kb = 0;
  long vmpin_peak = 0;
  for (uint64_t i = 0; i < pages; ++i) {
    uint64_t iova = kSeqGpa + i * kPage;
    uint32_t page = uint32_t((iova - kRamGpa) / kPage);
    bool kmap = kernel_mapped(iova, kPage);
    if (kmap != rig.engine.mapped(0).test(page))
      testbed::fail("%s premap %llu: page 0x%llx kernel %s, engine %s", window_policy_name(policy), ull(premap), ull(iova),
           kmap ? "mapped" : "unmapped", kmap ? "unmapped" : "mapped");
    if (kmap) continue;
    long before = vmpin_delta_kb();
    rig.fault(iova);
    faults++;
    if (!kernel_mapped(iova, kPage)) testbed::fail("fault at 0x%llx answered but the page is not mapped", ull(iova));
    long after = vmpin_delta_kb();
    if (after <= before) testbed::fail("VmPin did not grow with the fault at 0x%llx (%ld -> %ld kB)", ull(iova), before, after);
    expect_pin("sequential", rig.acct);
    pin_checks++;
    vmpin_peak = std::max(vmpin_peak, after);
    if (faults == 1) {
      expect_exact_window("first fault", iova, premap * kPage);
      first_window_kb = uint64_t(after - before);
    }
  }
  uint64_t want = (pages + premap - 1) / premap;
  info("sequential 4 MiB, window %-7s premap %3llu: %llu faults (want %llu), %llu MAPs, %llu groups invalid; "
       "first fault mapped exactly %llu kB (MD_CHECK_MAP, neighbours unmapped); VmPin +%ld kB = PinAccounting %llu B "
       "(checked after each of %llu faults)",
       window_policy_name(policy), ull(premap), ull(faults), ull(want), ull(rig.acc.maps), ull(rig.acc.invalid),
       ull(first_window_kb), vmpin_peak, ull(rig.acct.total()), ull(pin_checks));
  if (faults != want) testbed::fail("%llu faults, want %llu", ull(faults), ull(want));
  if (rig.acc.invalid != 0) testbed::fail("%llu groups answered INVALID", ull(rig.acc.invalid));
  if (uint64_t(vmpin_peak) != kSeqBytes / 1024) testbed::fail("VmPin +%ld kB after the touch, want %llu", vmpin_peak, ull(kSeqBytes / 1024));
  rig.unmap_all("sequential");
  if (kernel_mapped(kSeqGpa, kPage)) testbed::fail("page 0x%llx still mapped after unmap_all", ull(kSeqGpa));
}

// A DmaBackend that detaches the mock device from the fault HWPT on its first map(): the
// groups FaultQueue has read are auto-answered by the kernel before FaultQueue answers them.
class DetachingBackend final : public DmaBackend {
 public:
  explicit DetachingBackend(DmaBackend& inner) : inner_(inner) {}
  Status map(Iova iova, Hva hva, uint64_t size, Perm perm) override {
    if (!detached_) {
      if (int e = replace(g_ioas)) testbed::fail("MOCK_DOMAIN_REPLACE(-> ioas %u) inside map: %s", g_ioas, std::strerror(e));
      detached_ = true;
    }
    return inner_.map(iova, hva, size, perm);
  }
  Status unmap(Iova iova, uint64_t size) override { return inner_.unmap(iova, size); }
  Result<std::vector<Range<Iova>>> iova_ranges() override { return inner_.iova_ranges(); }
  uint64_t mapped_bytes() const override { return inner_.mapped_bytes(); }
  BackendKind kind() const override { return inner_.kind(); }
  bool detached() const { return detached_; }

 private:
  DmaBackend& inner_;
  bool detached_ = false;
};

// 1. One fault maps exactly the window: forward premap 16 at page 5 of a 2 MiB block maps
//    [5, 21); aligned maps the block [0, 16) holding page 5.
void one_fault(DmaBackend& backend, uint32_t& groups_delivered) {
  Rig fwd(backend, 16, WindowPolicy::kForward);
  uint64_t iova = kSeqGpa + 5 * kPage;
  fwd.fault(iova);
  groups_delivered++;
  expect_exact_window("forward premap 16", iova, 16 * kPage);
  expect_pin("forward premap 16", fwd.acct);
  long fwd_kb = vmpin_delta_kb();
  fwd.unmap_all("forward premap 16");

  Rig al(backend, 16, WindowPolicy::kAligned);
  al.fault(iova + 0x123, IOMMU_PGFAULT_PERM_READ);  // unaligned fault address, read only
  groups_delivered++;
  expect_exact_window("aligned premap 16", kSeqGpa, 16 * kPage);
  expect_pin("aligned premap 16", al.acct);
  long al_kb = vmpin_delta_kb();
  al.unmap_all("aligned premap 16");
  info("one fault at 0x%llx: forward premap 16 mapped exactly 0x%llx..0x%llx (%ld kB pinned), aligned premap 16 "
       "(fault at +0x123) exactly 0x%llx..0x%llx (%ld kB); page before and after each window unmapped; VmPin back "
       "to +0 after unmap_all",
       ull(iova), ull(iova), ull(iova + 16 * kPage - 1), fwd_kb, ull(kSeqGpa), ull(kSeqGpa + 16 * kPage - 1), al_kb);
}

// 4. Burst: 5000 faults on distinct pages, premap 1, triggered from another thread while
//    this one serves the queue.
void burst(DmaBackend& backend, uint32_t& groups_delivered) {
  Rig rig(backend, 1, WindowPolicy::kForward);
  std::atomic<int> trigger_err{0};
  std::atomic<unsigned> triggered{0};
  uint64_t tb = now_us();
  std::thread dev([&] {
    for (unsigned i = 0; i < kBurst; ++i) {
      if (int e = trigger_raw(kRamGpa + uint64_t(i) * kPage, kRW)) {
        trigger_err = e;
        return;
      }
      triggered++;
    }
  });
  bool done = serve_until(*rig.queue, rig.acc, kBurst, kBurstTimeoutMs);
  dev.join();
  uint64_t dt = now_us() - tb;
  if (trigger_err) testbed::fail("burst: TRIGGER_IOPF failed after %u: %s", triggered.load(), std::strerror(trigger_err));
  if (!done) testbed::fail("burst: only %llu of %u groups answered within %d ms", ull(rig.acc.groups), kBurst, kBurstTimeoutMs);
  groups_delivered += kBurst;
  expect_queue_idle("burst", groups_delivered + 100);
  if (!kernel_mapped(kRamGpa, uint64_t(kBurst) * kPage)) testbed::fail("burst: not all %u pages mapped", kBurst);
  if (kernel_mapped(kRamGpa + uint64_t(kBurst) * kPage, kPage)) testbed::fail("burst: page after the burst mapped");
  expect_pin("burst", rig.acct);
  long kb = vmpin_delta_kb();
  const auto& st = rig.engine.stats();
  info("burst: %u TRIGGER_IOPF from a second thread, %llu groups answered (%llu INVALID) in %llu reads, %llu MAPs, "
       "%llu ms; queue idle, no cookie 1..%u waiting; all %u pages mapped; VmPin +%ld kB = PinAccounting %llu B",
       kBurst, ull(rig.acc.groups), ull(rig.acc.invalid), ull(rig.acc.reads), ull(st.maps),
       ull(dt / 1000), groups_delivered + 100, kBurst, kb, ull(rig.acct.total()));
  if (rig.acc.invalid != 0 || rig.acc.groups != kBurst) testbed::fail("burst: unexpected answers");
  rig.unmap_all("burst");
}

// 5. A fault outside guest RAM (in the mock aperture) is answered INVALID, maps nothing.
void outside_ram(DmaBackend& backend, uint32_t& groups_delivered) {
  Rig rig(backend, 16, WindowPolicy::kForward);
  rig.fault(kOutsideIova);
  groups_delivered++;
  expect_queue_idle("outside RAM", groups_delivered + 100);
  const auto& dev = rig.acct.devices();
  auto it = dev.find(g_idev);
  if (rig.acc.invalid != 1 || rig.engine.stats().invalid_groups != 1) testbed::fail("outside RAM: not answered INVALID");
  if (it == dev.end() || it->second.invalid != 1) testbed::fail("outside RAM: not attributed to device %u", g_idev);
  if (rig.acct.total() != 0 || vmpin_delta_kb() != 0) testbed::fail("outside RAM: something was pinned");
  info("fault at 0x%llx (aperture, outside guest RAM): answered INVALID (engine invalid_groups %llu, device %u "
       "invalid %llu), cookie consumed, nothing mapped, VmPin +%ld kB",
       ull(kOutsideIova), ull(rig.engine.stats().invalid_groups), g_idev, ull(it->second.invalid), vmpin_delta_kb());
}

// 5b. A read-only region: a read fault maps the window read-only, a write fault is INVALID.
void read_only(DmaBackend& backend, uint32_t& groups_delivered) {
  Rig rig(backend, 4, WindowPolicy::kForward, 0, Perm::kRead);
  rig.fault(kSeqGpa, IOMMU_PGFAULT_PERM_READ);
  rig.fault(kSeqGpa + 1 * kMiB, IOMMU_PGFAULT_PERM_WRITE);
  groups_delivered += 2;
  if (rig.acc.invalid != 1) testbed::fail("read-only region: %llu INVALID, want 1 (the write)", ull(rig.acc.invalid));
  expect_exact_window("read-only region, read fault", kSeqGpa, 4 * kPage);
  if (kernel_mapped(kSeqGpa + 1 * kMiB, kPage)) testbed::fail("read-only region: the write fault mapped something");
  expect_pin("read-only region", rig.acct);
  info("read-only region: read fault mapped 16 kB (IOAS_MAP READABLE only, MD_CHECK_MAP ok), write fault answered "
       "INVALID and mapped nothing; VmPin +%ld kB",
       vmpin_delta_kb());
  rig.unmap_all("read-only region");
}

// 5b'. The kernel refuses the MAP (RLIMIT_MEMLOCK): the group is answered INVALID, nothing
//      stays charged or marked mapped, and the device's retry succeeds once the limit allows.
void memlock(DmaBackend& backend, uint32_t& groups_delivered) {
  rlimit old{};
  if (getrlimit(RLIMIT_MEMLOCK, &old) < 0) testbed::fail("getrlimit: %s", err());
  bool had_cap = set_ipc_lock(false);
  rlimit low{1 * kMiB, old.rlim_max};
  if (setrlimit(RLIMIT_MEMLOCK, &low) < 0) testbed::fail("setrlimit(MEMLOCK 1 MiB): %s", err());
  Rig rig(backend, 512, WindowPolicy::kForward);
  rig.fault(kSeqGpa);  // a 2 MiB window over a 1 MiB limit
  groups_delivered++;
  uint64_t invalid = rig.acc.invalid, failures = rig.engine.stats().map_failures;
  bool mapped = kernel_mapped(kSeqGpa, kPage);
  long kb = vmpin_delta_kb();
  if (setrlimit(RLIMIT_MEMLOCK, &old) < 0) testbed::fail("setrlimit(restore): %s", err());
  if (had_cap) set_ipc_lock(true);
  if (invalid != 1 || failures != 1 || mapped || kb != 0 || rig.acct.total() != 0 || rig.engine.mapped(0).count_set() != 0)
    testbed::fail("MAP over RLIMIT_MEMLOCK: %llu INVALID, %llu map failures, mapped %d, VmPin +%ld kB, accounting %llu",
                  ull(invalid), ull(failures), mapped, kb, ull(rig.acct.total()));
  rig.fault(kSeqGpa);  // the device retries
  groups_delivered++;
  if (rig.acc.invalid != 1) testbed::fail("retry after the limit was raised: INVALID again");
  expect_exact_window("retry after ENOMEM", kSeqGpa, 512 * kPage);
  expect_pin("retry after ENOMEM", rig.acct);
  info("MAP refused by the kernel (RLIMIT_MEMLOCK 1 MiB, CAP_IPC_LOCK %s): 2 MiB window answered INVALID, map "
       "failure rolled back (engine 0 pages, PinAccounting 0, VmPin +0, not in the mock page table); retry with the "
       "old limit mapped exactly 2 MiB (VmPin +%ld kB)",
       had_cap ? "dropped" : "absent", vmpin_delta_kb());
  rig.unmap_all("retry after ENOMEM");
}

// 5c. Pin limit: 64 KiB cap, premap 4 forward, 64 sequential pages: every window after the
//     4th evicts the coldest one with an IOAS_UNMAP of exactly its MAP; VmPin never exceeds
//     the cap. Then a batch of adjacent faults coalesces into one MAP (one window), and
//     reclaiming that coalesced window must also be one exact UNMAP.
void pin_limit(DmaBackend& backend, uint32_t& groups_delivered) {
  constexpr uint64_t kCap = 64 * kKiB;
  Rig rig(backend, 4, WindowPolicy::kForward, kCap);
  long peak = 0;
  for (uint64_t i = 0; i < 64; i += 4) {
    rig.fault(kSeqGpa + i * kPage);
    groups_delivered++;
    expect_pin("pin limit", rig.acct);
    peak = std::max(peak, vmpin_delta_kb());
  }
  if (uint64_t(peak) * 1024 > kCap) testbed::fail("pin limit: VmPin peaked at +%ld kB over the %llu kB cap", peak, ull(kCap / 1024));
  expect_exact_window("pin limit, last 4 windows", kSeqGpa + 48 * kPage, 16 * kPage);
  uint64_t reclaims = rig.engine.stats().reclaims, unmaps = rig.acc.unmaps;
  // Coalesced batch: 4 adjacent windows in one read, while the device thread is quiet.
  for (uint64_t i = 0; i < 4; ++i) trigger(kSeqGpa + 2 * kMiB + i * 4 * kPage);
  groups_delivered += 4;
  uint64_t maps_before = rig.acc.maps;
  if (!serve_until(*rig.queue, rig.acc, rig.acc.groups + 4, kServeTimeoutMs)) testbed::fail("pin limit: coalesced batch not answered");
  uint64_t batch_maps = rig.acc.maps - maps_before;
  expect_exact_window("pin limit, coalesced window", kSeqGpa + 2 * kMiB, 16 * kPage);
  uint64_t batch_unmaps = rig.acc.unmaps - unmaps;
  // One more fault must evict the coalesced 64 KiB window with a single exact UNMAP.
  uint64_t unmaps_before_last = rig.acc.unmaps;
  rig.fault(kSeqGpa + 3 * kMiB);
  groups_delivered++;
  if (kernel_mapped(kSeqGpa + 2 * kMiB, kPage)) testbed::fail("pin limit: coalesced window not reclaimed");
  expect_exact_window("pin limit, after reclaiming the coalesced window", kSeqGpa + 3 * kMiB, 4 * kPage);
  expect_pin("pin limit", rig.acct);
  if (rig.acc.invalid != 0) testbed::fail("pin limit: %llu INVALID", ull(rig.acc.invalid));
  if (batch_maps != 1 || rig.acc.unmaps - unmaps_before_last != 1)
    testbed::fail("pin limit: coalesced batch took %llu MAPs, its eviction %llu UNMAPs (want 1 and 1)", ull(batch_maps),
                  ull(rig.acc.unmaps - unmaps_before_last));
  info("pin limit 64 kB, premap 4: 16 sequential faults -> %llu reclaims (%llu exact IOAS_UNMAPs), VmPin peak +%ld kB, "
       "last 4 windows mapped, older ones not; 4 adjacent faults in one batch -> %llu MAP (evicting the %llu old "
       "windows), and that coalesced 64 kB window evicted by the next fault with %llu UNMAP; VmPin +%ld kB = "
       "PinAccounting %llu B",
       ull(reclaims), ull(unmaps), peak, ull(batch_maps), ull(batch_unmaps), ull(rig.acc.unmaps - unmaps_before_last),
       vmpin_delta_kb(), ull(rig.acct.total()));
  rig.unmap_all("pin limit");
}

// 6a. Detach with groups queued but not read: the kernel answers them (INVALID) itself.
void detach_queued(uint32_t& groups_delivered) {
  for (unsigned i = 0; i < 8; ++i) trigger(kRamGpa + uint64_t(i) * kPage);
  groups_delivered += 8;
  if (!readable(kServeTimeoutMs)) testbed::fail("detach: 8 faults triggered but the fd is not readable");
  if (int e = replace(g_ioas)) testbed::fail("MOCK_DOMAIN_REPLACE(-> ioas %u): %s", g_ioas, std::strerror(e));
  expect_queue_idle("detach with 8 queued", groups_delivered + 100);
  attach_fault_hwpt();
  info("detach with 8 groups queued: MOCK_DOMAIN_REPLACE back to the IOAS auto-answered them (queue empty, no "
       "cookie waiting); re-attached to hwpt %u",
       g_hwpt);
}

// 6b. Detach while FaultQueue holds read-but-unanswered groups: the kernel answers them,
//     FaultQueue's own answers are refused (EINVAL) and must be skipped, not fail.
void detach_in_flight(DmaBackend& backend, uint32_t& groups_delivered) {
  DetachingBackend detaching(backend);
  PinAccounting acct;
  FaultEngine engine(acct);
  FaultRegionSpec spec;
  spec.name = "ram";
  spec.gpa = Range<Gpa>{Gpa(kRamGpa), kRamSize};
  spec.hva = hva_of(g_ram);
  spec.fault_policy = {4, WindowPolicy::kForward};
  if (!engine.add_region(spec)) testbed::fail("add_region");
  FaultQueue q(linux_sys(), g_fault_fd, engine, detaching);
  for (unsigned i = 0; i < 4; ++i) trigger(kRamGpa + uint64_t(i) * 64 * kPage);
  groups_delivered += 4;
  if (!readable(kServeTimeoutMs)) testbed::fail("detach-in-flight: fd not readable");
  auto d = q.on_readable();
  if (!d) testbed::fail("detach-in-flight: on_readable failed: %s", d.error().message().c_str());
  if (!detaching.detached()) testbed::fail("detach-in-flight: no map happened");
  if (d->groups != 4 || d->refused != 4) testbed::fail("detach-in-flight: %llu groups, %llu answers refused, want 4 and 4", ull(d->groups), ull(d->refused));
  expect_queue_idle("detach in flight", groups_delivered + 100);
  long kb = vmpin_delta_kb();
  if (uint64_t(kb) * 1024 != acct.total()) testbed::fail("detach-in-flight: VmPin +%ld kB vs accounting %llu", kb, ull(acct.total()));
  q.unmap_all();
  long after = vmpin_delta_kb();
  if (after != 0) testbed::fail("detach-in-flight: VmPin +%ld kB after unmap_all", after);
  info("detach while 4 groups were read but not answered: on_readable ok (%llu groups, %llu MAPs, %llu answers "
       "refused by the kernel with EINVAL and skipped), queue idle; the IOAS kept the windows (VmPin +%ld kB), "
       "unmap_all -> +%ld kB",
       ull(d->groups), ull(d->maps), ull(d->refused), kb, after);
  attach_fault_hwpt();
}

}  // namespace pinless::testbed::engine_mock
