// fault_engine_mock: pinless's fault-driven DMA engine (Iommufd, IommufdBackend, FaultEngine,
// FaultQueue, PinAccounting) against the real kernel, with the IOMMUFD_TEST mock device as
// the faulting "device" (no emulated device raises PCI page requests; see TESTBED.md).
//
// Setup through pinless's API: Iommufd::open, IommufdBackend (the IOAS), fault_queue_alloc,
// hwpt_alloc(FAULT_ID_VALID); the mock device itself (MOCK_DOMAIN, MOCK_DOMAIN_REPLACE) and
// the faults (TRIGGER_IOPF) are raw IOMMU_TEST_CMD ioctls. Guest RAM: 64 MiB anonymous at
// GPA = IOVA 64 MiB (inside the mock aperture 16 MiB .. 2 GiB-1).
//
// TRIGGER_IOPF does not block until the response (kernel 7.2 selftest.c ->
// iommu_report_device_fault -> iommufd_fault_iopf_handler only queues the group and wakes
// the fd; the mock's page_response is a no-op), so a single thread may trigger and serve;
// the burst still triggers from a second thread to have both sides run concurrently.
//
// Proves, with the kernel's own view (MD_CHECK_MAP walks the mock page table; VmPin is the
// process's pinned_vm that iommufd charges):
//   1. one fault maps exactly the premap window (forward and aligned), nothing around it;
//   2. a sequential 4 MiB touch (fault only where the mock page table has no translation)
//      costs 1024/premap faults for premap 1, 16, 512 and each policy (forward, aligned,
//      hint: the kernel sends length 0, so hint behaves as forward);
//   3. VmPin grows only with faults and equals PinAccounting at every step;
//   4. a burst of 5000 faults (premap 1, distinct pages) is answered completely in bounded
//      time: nothing queued (read returns 0) and no cookie waiting (writing any cookie
//      1..5100 is refused with EINVAL);
//   5. a fault outside guest RAM is answered INVALID and maps nothing; on a read-only region a
//      read fault maps read-only and a write fault is INVALID; under a pin limit reclaim
//      evicts the coldest windows with exact UNMAPs (also a window coalesced from a batch); a
//      MAP the kernel refuses (RLIMIT_MEMLOCK) is answered INVALID and fully rolled back;
//   6. detaching the device (MOCK_DOMAIN_REPLACE back to the IOAS) auto-answers queued
//      groups, and FaultQueue survives answers the kernel refuses for groups it had read;
//   7. unmap_all and object teardown bring VmPin back to the baseline.
// Exit 77 without /dev/iommu or without CONFIG_IOMMUFD_TEST.
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <memory>

#include "fault_engine_mock.h"
#include "pinless/base/log.h"
#include "pinless/iommu/iommufd.h"
#include "pinless/iommu/iommufd_backend.h"

using namespace pinless;
using namespace pinless::iommu;
using namespace pinless::testbed;
using namespace pinless::testbed::engine_mock;

int main() {
  g_prog = "fault_engine_mock";
  set_log_level("warn");  // the expected warnings (INVALID fault, refused answers) show in the output
  if (!exists("/dev/iommu")) skip("no /dev/iommu: kernel without CONFIG_IOMMUFD");
  uint64_t t0 = now_us();
  g_vmpin_base = proc_status_kb("VmPin");
  if (g_vmpin_base < 0) testbed::fail("no VmPin in /proc/self/status");

  auto ctx_r = Iommufd::open(linux_sys());
  if (!ctx_r) testbed::fail("Iommufd::open: %s", ctx_r.error().message().c_str());
  std::unique_ptr<Iommufd> ctx = std::move(*ctx_r);
  g_fd = ctx->fd();
  auto be_r = IommufdBackend::create(*ctx);
  if (!be_r) testbed::fail("IommufdBackend::create: %s", be_r.error().message().c_str());
  std::unique_ptr<IommufdBackend> backend = std::move(*be_r);
  g_ioas = backend->ioas_id();

  iommu_test_cmd md = test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, g_ioas);
  if (ioctl(g_fd, IOMMU_TEST_CMD, &md) < 0) {
    if (errno == ENOTTY) skip("IOMMU_TEST_CMD is ENOTTY: kernel without CONFIG_IOMMUFD_TEST");
    testbed::fail("IOMMU_TEST_OP_MOCK_DOMAIN(ioas %u): %s", g_ioas, err());
  }
  g_stdev = md.mock_domain.out_stdev_id;
  g_idev = md.mock_domain.out_idev_id;

  auto fault_r = ctx->fault_queue_alloc();
  if (!fault_r) testbed::fail("fault_queue_alloc: %s", fault_r.error().message().c_str());
  std::optional<IommufdFault> fault(std::move(*fault_r));
  g_fault_fd = fault->fd.get();
  auto hwpt_r = ctx->hwpt_alloc(g_idev, g_ioas, 0, fault->id());
  if (!hwpt_r) testbed::fail("hwpt_alloc(FAULT_ID_VALID): %s", hwpt_r.error().message().c_str());
  std::optional<IommufdObject> hwpt(std::move(*hwpt_r));
  g_hwpt = hwpt->id();
  attach_fault_hwpt();

  void* ram = mmap(nullptr, kRamSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (ram == MAP_FAILED) testbed::fail("mmap guest RAM: %s", err());
  g_ram = static_cast<uint8_t*>(ram);
  info("setup: iommufd %d, ioas %u, mock idev %u, fault %u (fd %d), fault hwpt %u; guest RAM 64 MiB at GPA=IOVA "
       "0x%llx; VmPin baseline %ld kB; %llu us",
       g_fd, g_ioas, g_idev, fault->id(), g_fault_fd, g_hwpt, ull(kRamGpa), g_vmpin_base, ull(now_us() - t0));
  uint32_t groups_delivered = 0;  // upper bound on any cookie the kernel handed out

  one_fault(*backend, groups_delivered);

  // 2 + 3. Sequential touch: 1024/premap faults, VmPin follows the faults.
  for (WindowPolicy policy : {WindowPolicy::kForward, WindowPolicy::kAligned, WindowPolicy::kHint}) {
    for (uint64_t premap : {1, 16, 512}) {
      sequential(*backend, policy, premap);
      groups_delivered += uint32_t((kSeqBytes / kPage + premap - 1) / premap);
    }
  }

  burst(*backend, groups_delivered);
  outside_ram(*backend, groups_delivered);
  read_only(*backend, groups_delivered);
  memlock(*backend, groups_delivered);
  pin_limit(*backend, groups_delivered);
  detach_queued(groups_delivered);
  detach_in_flight(*backend, groups_delivered);

  // 7. Teardown with windows still mapped: destroying the objects releases every pin.
  long kb_mapped = 0;
  {
    Rig rig(*backend, 512, WindowPolicy::kAligned);
    rig.fault(kRamGpa + 3 * kMiB);
    rig.fault(kRamGpa + 40 * kMiB);
    groups_delivered += 2;
    expect_pin("teardown", rig.acct);
    kb_mapped = vmpin_delta_kb();
    // The rig is dropped without unmap_all: the IOAS destruction below must release the pins.
  }
  {
    iommu_destroy d{};
    d.size = sizeof d;
    d.id = g_stdev;
    if (ioctl(g_fd, IOMMU_DESTROY, &d) < 0) testbed::fail("IOMMU_DESTROY(mock device %u): %s", g_stdev, err());
  }
  hwpt.reset();
  fault.reset();
  long kb_objects = vmpin_delta_kb();
  backend.reset();
  long kb_ioas = vmpin_delta_kb();
  ctx.reset();
  long kb_end = vmpin_delta_kb();
  munmap(ram, kRamSize);
  info("teardown: 2 aligned 2 MiB windows mapped (VmPin +%ld kB); after destroying mock device, HWPT, FAULT +%ld kB; "
       "after destroying the IOAS (mappings still in it) +%ld kB; after closing /dev/iommu +%ld kB (VmPin %ld kB, "
       "baseline %ld kB)",
       kb_mapped, kb_objects, kb_ioas, kb_end, proc_status_kb("VmPin"), g_vmpin_base);
  if (kb_mapped != 4096) testbed::fail("teardown: expected +4096 kB mapped, VmPin says +%ld", kb_mapped);
  if (kb_ioas != 0 || kb_end != 0) testbed::fail("teardown: VmPin not back to baseline");
  info("ok (%llu ms)", ull((now_us() - t0) / 1000));
  return 0;
}
