// fault_engine_mock: shared by its files (see fault_engine_mock.cpp for what it proves).
//   fault_engine_mock_kernel.cpp  the kernel's view (TRIGGER_IOPF, MD_CHECK_MAP, VmPin, the fault fd)
//   fault_engine_mock_steps.cpp   one function per proof, each on its own Rig
//   fault_engine_mock.cpp         setup, the order of the steps, teardown
#pragma once

#include <optional>

#include "pinless/base/sys.h"
#include "pinless/iommu/fault_engine.h"
#include "pinless/iommu/fault_queue.h"
#include "pinless/iommu/uapi/iommufd_test.h"
#include "testbed_util.h"

namespace pinless::testbed::engine_mock {

using namespace pinless::iommu;

inline constexpr uint64_t kPage = 4096;
inline constexpr uint64_t kRamGpa = 64 * kMiB;
inline constexpr uint64_t kRamSize = 64 * kMiB;
inline constexpr uint64_t kOutsideIova = 32 * kMiB;      // in the aperture, below guest RAM
inline constexpr uint64_t kSeqGpa = kRamGpa + 8 * kMiB;  // 2 MiB aligned
inline constexpr uint64_t kSeqBytes = 4 * kMiB;
inline constexpr unsigned kBurst = 5000;
inline constexpr int kServeTimeoutMs = 5000;
inline constexpr int kBurstTimeoutMs = 120000;
inline constexpr uint32_t kRW = IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE;

// The one mock device on the one IOAS, shared by every step (single-threaded but for the burst).
inline int g_fd = -1;        // iommufd
inline int g_fault_fd = -1;  // fault queue fd
inline uint32_t g_ioas = 0, g_stdev = 0, g_idev = 0, g_hwpt = 0;
inline uint8_t* g_ram = nullptr;
inline long g_vmpin_base = 0;


iommu_test_cmd test_cmd(uint32_t op, uint32_t id);
inline unsigned long long ull(uint64_t v) { return static_cast<unsigned long long>(v); }
// Returns 0 or errno.
int trigger_raw(uint64_t iova, uint32_t perm);
void trigger(uint64_t iova, uint32_t perm = kRW);
// The kernel's view: does the mock page table of the fault HWPT translate [iova, +len) to
// the guest RAM at that GPA? (An unmapped mock page translates to 0: EINVAL.)
bool kernel_mapped(uint64_t iova, uint64_t len);
// Mapped exactly [first, first+len): all of it, and neither neighbouring page.
void expect_exact_window(const char* what, uint64_t first, uint64_t len);
// MOCK_DOMAIN_REPLACE of the mock device onto pt_id; 0 or errno.
int replace(uint32_t pt_id);
void attach_fault_hwpt();
long vmpin_delta_kb();
void expect_pin(const char* what, const PinAccounting& acct);
bool readable(int timeout_ms);
// Event loop: poll the fault fd, on_readable() when readable, until `groups` groups have
// been answered in total (acc) or the deadline passes.
bool serve_until(FaultQueue& q, FaultQueue::Drained& acc, uint64_t groups, int timeout_ms);
// Nothing queued and nothing waiting for a response, as the kernel sees it.
void expect_queue_idle(const char* what, uint32_t max_cookie);
// Turns CAP_IPC_LOCK on or off in this thread's effective set (it stays permitted), so that
// iommufd charges RLIMIT_MEMLOCK. Returns false if the process does not have it at all.
bool set_ipc_lock(bool on);

// A fault engine with one region over all guest RAM, served by a FaultQueue on the fault fd.
struct Rig {
  PinAccounting acct;
  FaultEngine engine{acct};
  std::optional<FaultQueue> queue;
  FaultQueue::Drained acc;
  Rig(DmaBackend& backend, uint64_t premap, WindowPolicy policy, uint64_t pin_limit = 0, Perm perm = Perm::kReadWrite)
      : acct(pin_limit) {
    FaultRegionSpec spec;
    spec.name = "ram";
    spec.gpa = Range<Gpa>{Gpa(kRamGpa), kRamSize};
    spec.hva = hva_of(g_ram);
    spec.page_size = kPage;
    spec.fault_policy.premap_pages = premap;
    spec.fault_policy.window = policy;
    spec.perm = perm;
    engine.set_reclaim(true);  // the pin-limit steps prove reclaim against the kernel
    auto r = engine.add_region(spec);
    if (!r) testbed::fail("add_region: %s", r.error().message().c_str());
    queue.emplace(linux_sys(), g_fault_fd, engine, backend);
  }
  // One fault, served to completion.
  void fault(uint64_t iova, uint32_t perm = kRW) {
    trigger(iova, perm);
    if (!serve_until(*queue, acc, acc.groups + 1, kServeTimeoutMs))
      testbed::fail("fault at 0x%llx not answered within %d ms", ull(iova), kServeTimeoutMs);
  }
  void unmap_all(const char* what) {
    queue->unmap_all();
    if (acct.total() != 0) testbed::fail("%s: PinAccounting %llu bytes after unmap_all", what, ull(acct.total()));
    if (long d = vmpin_delta_kb(); d != 0) testbed::fail("%s: VmPin +%ld kB after unmap_all", what, d);
  }
};

// Sequential touch of [kSeqGpa, +4 MiB) in 4 KiB steps; a page faults only if the mock page
// table does not translate it.
void sequential(DmaBackend& backend, WindowPolicy policy, uint64_t premap);
void one_fault(DmaBackend& backend, uint32_t& groups_delivered);
void burst(DmaBackend& backend, uint32_t& groups_delivered);
void outside_ram(DmaBackend& backend, uint32_t& groups_delivered);
void read_only(DmaBackend& backend, uint32_t& groups_delivered);
void memlock(DmaBackend& backend, uint32_t& groups_delivered);
void pin_limit(DmaBackend& backend, uint32_t& groups_delivered);
void detach_queued(uint32_t& groups_delivered);
void detach_in_flight(DmaBackend& backend, uint32_t& groups_delivered);

}  // namespace pinless::testbed::engine_mock
