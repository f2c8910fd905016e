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
#include <linux/capability.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include <atomic>
#include <memory>
#include <optional>
#include <thread>

#include "pinless/base/log.h"
#include "pinless/base/sys.h"
#include "pinless/iommu/fault_engine.h"
#include "pinless/iommu/fault_queue.h"
#include "pinless/iommu/iommufd.h"
#include "pinless/iommu/iommufd_backend.h"
#include "pinless/iommu/uapi/iommufd_test.h"
#include "testbed_util.h"

using namespace pinless;
using namespace pinless::iommu;
using namespace pinless::testbed;

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kRamGpa = 64 * kMiB;
constexpr uint64_t kRamSize = 64 * kMiB;
constexpr uint64_t kOutsideIova = 32 * kMiB;      // in the aperture, below guest RAM
constexpr uint64_t kSeqGpa = kRamGpa + 8 * kMiB;  // 2 MiB aligned
constexpr uint64_t kSeqBytes = 4 * kMiB;
constexpr unsigned kBurst = 5000;
constexpr int kServeTimeoutMs = 5000;
constexpr int kBurstTimeoutMs = 120000;
constexpr uint32_t kRW = IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE;

int g_fd = -1;        // iommufd
int g_fault_fd = -1;  // fault queue fd
uint32_t g_ioas = 0, g_stdev = 0, g_idev = 0, g_hwpt = 0;
uint8_t* g_ram = nullptr;
long g_vmpin_base = 0;

iommu_test_cmd test_cmd(uint32_t op, uint32_t id) {
  iommu_test_cmd c{};
  c.size = sizeof c;
  c.op = op;
  c.id = id;
  return c;
}

unsigned long long ull(uint64_t v) { return static_cast<unsigned long long>(v); }

// Returns 0 or errno.
int trigger_raw(uint64_t iova, uint32_t perm) {
  iommu_test_cmd c = test_cmd(IOMMU_TEST_OP_TRIGGER_IOPF, 0);
  c.trigger_iopf.dev_id = g_idev;
  c.trigger_iopf.pasid = 0;
  c.trigger_iopf.grpid = 1;
  c.trigger_iopf.perm = perm;
  c.trigger_iopf.addr = iova;
  return ioctl(g_fd, IOMMU_TEST_CMD, &c) < 0 ? errno : 0;
}

void trigger(uint64_t iova, uint32_t perm = kRW) {
  if (int e = trigger_raw(iova, perm)) testbed::fail("TRIGGER_IOPF(0x%llx): %s", ull(iova), std::strerror(e));
}

// The kernel's view: does the mock page table of the fault HWPT translate [iova, +len) to
// the guest RAM at that GPA? (An unmapped mock page translates to 0: EINVAL.)
bool kernel_mapped(uint64_t iova, uint64_t len) {
  iommu_test_cmd c = test_cmd(IOMMU_TEST_OP_MD_CHECK_MAP, g_hwpt);
  c.check_map.iova = iova;
  c.check_map.length = len;
  c.check_map.uptr = reinterpret_cast<uint64_t>(g_ram + (iova - kRamGpa));
  if (ioctl(g_fd, IOMMU_TEST_CMD, &c) == 0) return true;
  if (errno != EINVAL) testbed::fail("MD_CHECK_MAP(hwpt %u, 0x%llx+0x%llx): %s", g_hwpt, ull(iova), ull(len), err());
  return false;
}

// Mapped exactly [first, first+len): all of it, and neither neighbouring page.
void expect_exact_window(const char* what, uint64_t first, uint64_t len) {
  if (!kernel_mapped(first, len)) testbed::fail("%s: window 0x%llx+0x%llx not mapped in the mock page table", what, ull(first), ull(len));
  if (first > kRamGpa && kernel_mapped(first - kPage, kPage)) testbed::fail("%s: page before the window 0x%llx is mapped", what, ull(first - kPage));
  if (first + len < kRamGpa + kRamSize && kernel_mapped(first + len, kPage))
    testbed::fail("%s: page after the window 0x%llx is mapped", what, ull(first + len));
}

int replace(uint32_t pt_id) {
  iommu_test_cmd c = test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, g_stdev);
  c.mock_domain_replace.pt_id = pt_id;
  return ioctl(g_fd, IOMMU_TEST_CMD, &c) < 0 ? errno : 0;
}

long vmpin_delta_kb() { return proc_status_kb("VmPin") - g_vmpin_base; }

void expect_pin(const char* what, const PinAccounting& acct) {
  long d = vmpin_delta_kb();
  if (uint64_t(d) * 1024 != acct.total())
    testbed::fail("%s: VmPin +%ld kB but PinAccounting says %llu bytes", what, d, ull(acct.total()));
}

bool readable(int timeout_ms) {
  pollfd p{g_fault_fd, POLLIN, 0};
  int r = poll(&p, 1, timeout_ms);
  if (r < 0 && errno != EINTR) testbed::fail("poll fault fd: %s", err());
  return r > 0 && (p.revents & POLLIN);
}

void add(FaultQueue::Drained& acc, const FaultQueue::Drained& d) {
  acc.reads += d.reads;
  acc.records += d.records;
  acc.groups += d.groups;
  acc.invalid += d.invalid;
  acc.maps += d.maps;
  acc.unmaps += d.unmaps;
}

// Event loop: poll the fault fd, on_readable() when readable, until `groups` groups have
// been answered in total (acc) or the deadline passes.
bool serve_until(FaultQueue& q, FaultQueue::Drained& acc, uint64_t groups, int timeout_ms) {
  uint64_t deadline = now_us() + uint64_t(timeout_ms) * 1000;
  while (acc.groups < groups) {
    uint64_t t = now_us();
    if (t >= deadline) return false;
    if (!readable(int(std::min<uint64_t>((deadline - t) / 1000 + 1, 100)))) continue;
    auto d = q.on_readable();
    if (!d) testbed::fail("FaultQueue::on_readable: %s", d.error().message().c_str());
    add(acc, *d);
  }
  return true;
}

// Nothing queued and nothing waiting for a response, as the kernel sees it.
void expect_queue_idle(const char* what, uint32_t max_cookie) {
  if (readable(0)) testbed::fail("%s: fault fd still readable", what);
  iommu_hwpt_pgfault rec[1];
  ssize_t n = read(g_fault_fd, rec, sizeof rec);
  if (n != 0) testbed::fail("%s: read of an idle queue returned %zd (%s)", what, n, n < 0 ? err() : "data");
  // Cookies are allocated lowest-free from 1, so every waiting group has a cookie no larger
  // than the number of groups ever delivered: refusing all of them means none waits.
  for (uint32_t c = 1; c <= max_cookie; ++c) {
    iommu_hwpt_page_response r{c, IOMMUFD_PAGE_RESP_INVALID};
    if (write(g_fault_fd, &r, sizeof r) >= 0) testbed::fail("%s: cookie %u was still waiting for a response", what, c);
    if (errno != EINVAL) testbed::fail("%s: probing cookie %u: %s", what, c, err());
  }
}

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
// table does not translate it. Returns the number of faults.
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

// Turns CAP_IPC_LOCK on or off in this thread's effective set (it stays permitted), so that
// iommufd charges RLIMIT_MEMLOCK. Returns false if the process does not have it at all.
bool set_ipc_lock(bool on) {
  __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct d[2]{};
  if (syscall(SYS_capget, &h, d) < 0) testbed::fail("capget: %s", err());
  uint32_t bit = 1u << (CAP_IPC_LOCK % 32);
  auto& w = d[CAP_IPC_LOCK / 32];
  if (!(w.permitted & bit)) return false;
  w.effective = on ? (w.effective | bit) : (w.effective & ~bit);
  if (syscall(SYS_capset, &h, d) < 0) testbed::fail("capset: %s", err());
  return true;
}

void attach_fault_hwpt() {
  if (int e = replace(g_hwpt)) testbed::fail("MOCK_DOMAIN_REPLACE(stdev %u -> hwpt %u): %s", g_stdev, g_hwpt, std::strerror(e));
}

}  // namespace

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

  // 1. One fault maps exactly the window: forward premap 16 at page 5 of a 2 MiB block maps
  //    [5, 21); aligned maps the block [0, 16) holding page 5.
  {
    Rig fwd(*backend, 16, WindowPolicy::kForward);
    uint64_t iova = kSeqGpa + 5 * kPage;
    fwd.fault(iova);
    groups_delivered++;
    expect_exact_window("forward premap 16", iova, 16 * kPage);
    expect_pin("forward premap 16", fwd.acct);
    long fwd_kb = vmpin_delta_kb();
    fwd.unmap_all("forward premap 16");

    Rig al(*backend, 16, WindowPolicy::kAligned);
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

  // 2 + 3. Sequential touch: 1024/premap faults, VmPin follows the faults.
  for (WindowPolicy policy : {WindowPolicy::kForward, WindowPolicy::kAligned, WindowPolicy::kHint}) {
    for (uint64_t premap : {1, 16, 512}) {
      sequential(*backend, policy, premap);
      groups_delivered += uint32_t((kSeqBytes / kPage + premap - 1) / premap);
    }
  }

  // 4. Burst: 5000 faults on distinct pages, premap 1, triggered from another thread while
  //    this one serves the queue.
  {
    Rig rig(*backend, 1, WindowPolicy::kForward);
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
  {
    Rig rig(*backend, 16, WindowPolicy::kForward);
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
  {
    Rig rig(*backend, 4, WindowPolicy::kForward, 0, Perm::kRead);
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
  {
    rlimit old{};
    if (getrlimit(RLIMIT_MEMLOCK, &old) < 0) testbed::fail("getrlimit: %s", err());
    bool had_cap = set_ipc_lock(false);
    rlimit low{1 * kMiB, old.rlim_max};
    if (setrlimit(RLIMIT_MEMLOCK, &low) < 0) testbed::fail("setrlimit(MEMLOCK 1 MiB): %s", err());
    Rig rig(*backend, 512, WindowPolicy::kForward);
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
  {
    constexpr uint64_t kCap = 64 * kKiB;
    Rig rig(*backend, 4, WindowPolicy::kForward, kCap);
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
  {
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
  {
    DetachingBackend detaching(*backend);
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
