// bench_fault_roundtrip: one I/O page fault round trip (TRIGGER_IOPF -> poll -> read ->
// IOAS_MAP -> write response) through pinless's FaultQueue + FaultEngine + IommufdBackend,
// against a bare C-style loop doing the same syscalls directly. IOMMUFD_TEST mock device,
// premap 1, every fault on a distinct 4 KiB page (guest RAM populated up front, so both
// sides pay the same pinning cost). The two loops alternate fault by fault so that drift of
// the (emulated) machine hits both alike. Prints measurements only; run it by hand in L1:
//   scripts/testbed run --kernel iommufd --edu 0 -- BUILD/tests/testbed/bench_fault_roundtrip [N]
// BENCH_SLOW=1 in the environment also lists every fault slower than 200 us (both loops),
// which is how the WindowTable growth spikes were found. A final diagnostic pass splits
// pinless's time into syscalls (read, write, IOAS_MAP) and its own code.
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <optional>
#include <vector>

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
constexpr uint64_t kHalf = 32 * kMiB;  // pinless region: [64, 96) MiB; bare loop: [96, 128) MiB
constexpr unsigned kWarmup = 100;
constexpr uint32_t kRW = IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE;

int g_fd = -1, g_fault_fd = -1;
uint32_t g_ioas = 0, g_idev = 0;

unsigned long long ull(uint64_t v) { return static_cast<unsigned long long>(v); }

void trigger(uint64_t iova) {
  iommu_test_cmd c{};
  c.size = sizeof c;
  c.op = IOMMU_TEST_OP_TRIGGER_IOPF;
  c.trigger_iopf.dev_id = g_idev;
  c.trigger_iopf.grpid = 1;
  c.trigger_iopf.perm = kRW;
  c.trigger_iopf.addr = iova;
  if (ioctl(g_fd, IOMMU_TEST_CMD, &c) < 0) testbed::fail("TRIGGER_IOPF(0x%llx): %s", ull(iova), err());
}

void wait_readable() {
  pollfd p{g_fault_fd, POLLIN, 0};
  int r = poll(&p, 1, 2000);
  if (r <= 0 || !(p.revents & POLLIN)) testbed::fail("fault fd not readable after TRIGGER_IOPF (%d)", r);
}

// The bare loop: what a VMM without the engine would do, in plain syscalls.
uint64_t bare_fault(uint8_t* ram, uint64_t iova) {
  static iommu_hwpt_pgfault rec[64];
  uint64_t t = now_us();
  trigger(iova);
  wait_readable();
  ssize_t n = read(g_fault_fd, rec, sizeof rec);
  if (n != sizeof(iommu_hwpt_pgfault)) testbed::fail("bare: read %zd (%s)", n, n < 0 ? err() : "want one record");
  uint64_t page = rec[0].addr & ~(kPage - 1);
  iommu_ioas_map m{};
  m.size = sizeof m;
  m.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
  m.ioas_id = g_ioas;
  m.user_va = reinterpret_cast<uint64_t>(ram + (page - kRamGpa));
  m.length = kPage;
  m.iova = page;
  if (ioctl(g_fd, IOMMU_IOAS_MAP, &m) < 0) testbed::fail("bare: IOAS_MAP(0x%llx): %s", ull(page), err());
  iommu_hwpt_page_response r{rec[0].cookie, IOMMUFD_PAGE_RESP_SUCCESS};
  if (write(g_fault_fd, &r, sizeof r) != sizeof r) testbed::fail("bare: write response: %s", err());
  return now_us() - t;
}

uint64_t pinless_fault(FaultQueue& q, uint64_t iova) {
  uint64_t t = now_us();
  trigger(iova);
  wait_readable();
  auto d = q.on_readable();
  uint64_t dt = now_us() - t;
  if (!d) testbed::fail("on_readable: %s", d.error().message().c_str());
  if (d->groups != 1 || d->invalid != 0 || d->maps != 1) testbed::fail("pinless: %llu groups, %llu invalid, %llu maps", ull(d->groups), ull(d->invalid), ull(d->maps));
  return dt;
}

// Diagnostics: time spent inside the fault fd read/write syscalls and the MAP ioctl, so
// that pinless's own user-space cost per fault can be told apart from the kernel's.
uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

class TimingSys final : public Sys {
 public:
  explicit TimingSys(Sys& in) : in_(in) {}
  uint64_t reads = 0, writes = 0, ns = 0;
  int open(const char* p, int f, mode_t m) override { return in_.open(p, f, m); }
  int close(int fd) override { return in_.close(fd); }
  int ioctl(int fd, unsigned long r, void* a) override { return in_.ioctl(fd, r, a); }
  int ioctl_int(int fd, unsigned long r, unsigned long a) override { return in_.ioctl_int(fd, r, a); }
  void* mmap(void* a, size_t l, int p, int f, int fd, off_t o, int* e) override { return in_.mmap(a, l, p, f, fd, o, e); }
  int munmap(void* a, size_t l) override { return in_.munmap(a, l); }
  ssize_t read(int fd, void* b, size_t n) override {
    uint64_t t = now_ns();
    ssize_t r = in_.read(fd, b, n);
    ns += now_ns() - t;
    reads++;
    return r;
  }
  ssize_t write(int fd, const void* b, size_t n) override {
    uint64_t t = now_ns();
    ssize_t r = in_.write(fd, b, n);
    ns += now_ns() - t;
    writes++;
    return r;
  }
  ssize_t pread(int fd, void* b, size_t n, off_t o) override { return in_.pread(fd, b, n, o); }
  ssize_t pwrite(int fd, const void* b, size_t n, off_t o) override { return in_.pwrite(fd, b, n, o); }
  int eventfd(unsigned int v, int f) override { return in_.eventfd(v, f); }
  int memfd_create(const char* n, unsigned int f) override { return in_.memfd_create(n, f); }
  int ftruncate(int fd, off_t l) override { return in_.ftruncate(fd, l); }

 private:
  Sys& in_;
};

class TimingBackend final : public DmaBackend {
 public:
  explicit TimingBackend(DmaBackend& in) : in_(in) {}
  uint64_t maps = 0, ns = 0;
  Status map(Iova iova, Hva hva, uint64_t size, Perm perm) override {
    uint64_t t = now_ns();
    Status s = in_.map(iova, hva, size, perm);
    ns += now_ns() - t;
    maps++;
    return s;
  }
  Status unmap(Iova iova, uint64_t size) override { return in_.unmap(iova, size); }
  Result<std::vector<Range<Iova>>> iova_ranges() override { return in_.iova_ranges(); }
  uint64_t mapped_bytes() const override { return in_.mapped_bytes(); }
  BackendKind kind() const override { return in_.kind(); }

 private:
  DmaBackend& in_;
};

struct Summary {
  double median = 0, mean = 0, p90 = 0, p99 = 0, max = 0;
};
Summary summarize(std::vector<uint64_t> v) {
  std::sort(v.begin(), v.end());
  Summary s;
  size_t n = v.size();
  s.median = n % 2 ? double(v[n / 2]) : (double(v[n / 2 - 1]) + double(v[n / 2])) / 2;
  s.mean = double(std::accumulate(v.begin(), v.end(), uint64_t{0})) / double(n);
  s.p90 = double(v[n * 9 / 10]);
  s.p99 = double(v[n * 99 / 100]);
  s.max = double(v.back());
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  g_prog = "bench_fault_roundtrip";
  set_log_level("error");
  unsigned n = argc > 1 ? unsigned(std::strtoul(argv[1], nullptr, 10)) : 2000;
  if (n == 0 || uint64_t(n + kWarmup) * kPage > kHalf) testbed::fail("N must be 1..%llu", ull(kHalf / kPage - kWarmup));
  if (!exists("/dev/iommu")) skip("no /dev/iommu: kernel without CONFIG_IOMMUFD");

  auto ctx_r = Iommufd::open(linux_sys());
  if (!ctx_r) testbed::fail("Iommufd::open: %s", ctx_r.error().message().c_str());
  std::unique_ptr<Iommufd> ctx = std::move(*ctx_r);
  g_fd = ctx->fd();
  auto be_r = IommufdBackend::create(*ctx);
  if (!be_r) testbed::fail("IommufdBackend::create: %s", be_r.error().message().c_str());
  std::unique_ptr<IommufdBackend> backend = std::move(*be_r);
  g_ioas = backend->ioas_id();
  iommu_test_cmd md{};
  md.size = sizeof md;
  md.op = IOMMU_TEST_OP_MOCK_DOMAIN;
  md.id = g_ioas;
  if (ioctl(g_fd, IOMMU_TEST_CMD, &md) < 0) {
    if (errno == ENOTTY) skip("IOMMU_TEST_CMD is ENOTTY: kernel without CONFIG_IOMMUFD_TEST");
    testbed::fail("MOCK_DOMAIN: %s", err());
  }
  uint32_t stdev = md.mock_domain.out_stdev_id;
  g_idev = md.mock_domain.out_idev_id;
  auto fault_r = ctx->fault_queue_alloc();
  if (!fault_r) testbed::fail("fault_queue_alloc: %s", fault_r.error().message().c_str());
  std::optional<IommufdFault> fault(std::move(*fault_r));
  g_fault_fd = fault->fd.get();
  auto hwpt_r = ctx->hwpt_alloc(g_idev, g_ioas, 0, fault->id());
  if (!hwpt_r) testbed::fail("hwpt_alloc: %s", hwpt_r.error().message().c_str());
  std::optional<IommufdObject> hwpt(std::move(*hwpt_r));
  iommu_test_cmd rep{};
  rep.size = sizeof rep;
  rep.op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE;
  rep.id = stdev;
  rep.mock_domain_replace.pt_id = hwpt->id();
  if (ioctl(g_fd, IOMMU_TEST_CMD, &rep) < 0) testbed::fail("MOCK_DOMAIN_REPLACE: %s", err());

  auto* ram = static_cast<uint8_t*>(
      mmap(nullptr, 2 * kHalf, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
  if (ram == MAP_FAILED) testbed::fail("mmap: %s", err());

  {
    PinAccounting acct;
    FaultEngine engine(acct);
    FaultRegionSpec spec;
    spec.name = "ram";
    spec.gpa = Range<Gpa>{Gpa(kRamGpa), kHalf};
    spec.hva = hva_of(ram);
    spec.fault_policy = {1, WindowPolicy::kForward};
    if (auto r = engine.add_region(spec); !r) testbed::fail("add_region: %s", r.error().message().c_str());
    FaultQueue q(linux_sys(), g_fault_fd, engine, *backend);

    std::vector<uint64_t> tp, tb;
    tp.reserve(n);
    tb.reserve(n);
    for (unsigned i = 0; i < kWarmup + n; ++i) {
      // Which loop goes first alternates too, so that deferred kernel work one of them leaves
      // behind (freeing, RCU) does not always land in the other one's window.
      uint64_t p, b;
      if (i % 2) {
        p = pinless_fault(q, kRamGpa + uint64_t(i) * kPage);
        b = bare_fault(ram, kRamGpa + kHalf + uint64_t(i) * kPage);
      } else {
        b = bare_fault(ram, kRamGpa + kHalf + uint64_t(i) * kPage);
        p = pinless_fault(q, kRamGpa + uint64_t(i) * kPage);
      }
      if (i >= kWarmup) {
        tp.push_back(p);
        tb.push_back(b);
      }
    }
    Summary sp = summarize(tp), sb = summarize(tb);
    info("N=%u per loop (after %u warm-up each), premap 1, alternating fault by fault and which goes first, TCG L1 (compare ratios)", n, kWarmup);
    info("bare    : median %.1f us, mean %.1f us, p90 %.1f, p99 %.1f, max %.1f us per fault (trigger, poll, read, "
         "IOAS_MAP, write)",
         sb.median, sb.mean, sb.p90, sb.p99, sb.max);
    info("pinless : median %.1f us, mean %.1f us, p90 %.1f, p99 %.1f, max %.1f us per fault (trigger, poll, "
         "FaultQueue::on_readable)",
         sp.median, sp.mean, sp.p90, sp.p99, sp.max);
    if (std::getenv("BENCH_SLOW")) {
      for (unsigned i = 0; i < n; ++i)
        if (tp[i] > 200 || tb[i] > 200) info("slow %u: pinless %llu bare %llu", i, ull(tp[i]), ull(tb[i]));
    }
    info("ratio pinless/bare: median %.3f, mean %.3f", sp.median / sb.median, sp.mean / sb.mean);
    q.unmap_all();

    // Diagnostic pass (not part of the ratio): where pinless's time goes inside on_readable.
    constexpr unsigned kDiag = 500;
    TimingSys tsys(linux_sys());
    TimingBackend tbe(*backend);
    FaultQueue tq(tsys, g_fault_fd, engine, tbe);
    uint64_t in_call = 0;
    for (unsigned i = 0; i < kDiag; ++i) {
      trigger(kRamGpa + uint64_t(i) * kPage);
      wait_readable();
      uint64_t t = now_ns();
      auto d = tq.on_readable();
      in_call += now_ns() - t;
      if (!d || d->groups != 1) testbed::fail("diagnostic pass: on_readable");
    }
    double call_us = double(in_call) / kDiag / 1000, sys_us = double(tsys.ns + tbe.ns) / kDiag / 1000;
    info("pinless on_readable, %u faults: %.1f us per call, of which %.1f us in read/write/IOAS_MAP "
         "(%.2f reads, %.2f writes, %.2f MAPs per fault) and %.1f us in pinless itself",
         kDiag, call_us, sys_us, double(tsys.reads) / kDiag, double(tsys.writes) / kDiag, double(tbe.maps) / kDiag,
         call_us - sys_us);
    tq.unmap_all();
  }
  iommu_destroy d{};
  d.size = sizeof d;
  d.id = stdev;
  if (ioctl(g_fd, IOMMU_DESTROY, &d) < 0) testbed::fail("IOMMU_DESTROY(mock device): %s", err());
  hwpt.reset();
  fault.reset();
  backend.reset();
  ctx.reset();
  munmap(ram, 2 * kHalf);
  return 0;
}
