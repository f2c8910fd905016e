// bench_fault_engine: user-space cost per I/O page fault of the fault-driven DMA path,
// without a kernel: a fake fault fd serves pre-generated 40-byte records (one single-record
// group per fault, as PCIe PRI page requests usually arrive), FaultQueue reads them in
// batches, FaultEngine plans windows and responses, a no-op backend "maps", and the
// responses are written back in one write per batch. Prints ns/fault for premap 1, 16, 512
// under each window policy. Measurements only; no assertions.
//
//   bench_fault_engine [faults]   (default 1000000)
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "fakes/read_write_sys.h"
#include "pinless/iommu/fault_queue.h"
#include "pinless/iommu/uapi/iommufd.h"

using namespace pinless;
using namespace pinless::iommu;

namespace {

// Serves records from memory; read() returns 0 once the current pass is consumed.
class BenchSys final : public testing::ReadWriteSys {
 public:
  std::vector<iommu_hwpt_pgfault> records;
  size_t cursor = 0;
  size_t end = 0;
  uint64_t responses = 0;

  ssize_t read(int, void* buf, size_t n) override {
    size_t want = std::min(n / sizeof(iommu_hwpt_pgfault), end - cursor);
    std::memcpy(buf, records.data() + cursor, want * sizeof(iommu_hwpt_pgfault));
    cursor += want;
    return static_cast<ssize_t>(want * sizeof(iommu_hwpt_pgfault));
  }
  ssize_t write(int, const void*, size_t n) override {
    responses += n / sizeof(iommu_hwpt_page_response);
    return static_cast<ssize_t>(n);
  }
};

class NoopBackend final : public DmaBackend {
 public:
  uint64_t maps = 0;
  Status map(Iova, Hva, uint64_t size, Perm) override {
    maps++;
    bytes_ += size;
    return {};
  }
  Status unmap(Iova, uint64_t size) override {
    bytes_ -= size;
    return {};
  }
  Result<std::vector<Range<Iova>>> iova_ranges() override { return std::vector<Range<Iova>>{}; }
  uint64_t mapped_bytes() const override { return bytes_; }
  BackendKind kind() const override { return BackendKind::kIommufd; }

 private:
  uint64_t bytes_ = 0;
};

constexpr uint64_t kRegionBase = 0x100000000;  // 4 GiB
constexpr uint64_t kRegionPages = 1 << 20;      // 4 GiB of 4K pages

uint64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

struct Result_ {
  double ns_per_fault;
  double cpu_ns_per_fault;
  uint64_t maps;
  uint64_t faults;
};

Result_ run(uint64_t faults, uint64_t premap, WindowPolicy policy) {
  BenchSys sys;
  NoopBackend backend;
  PinAccounting acct;
  FaultEngine engine(acct);
  FaultRegionSpec spec;
  spec.name = "ram";
  spec.gpa = {Gpa(kRegionBase), kRegionPages * kPageSize};
  spec.hva = Hva(0x7f0000000000);
  spec.fault_policy = {premap, policy, 512};
  (void)engine.add_region(spec);
  FaultQueue queue(sys, 3, engine, backend);

  // One pass faults every window of the region once, in random order (a device scattering
  // DMA over guest RAM); the address is a random page inside the window.
  uint64_t windows = kRegionPages / premap;
  std::vector<uint64_t> order(windows);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(42);
  std::shuffle(order.begin(), order.end(), rng);
  sys.records.resize(windows);
  for (uint64_t i = 0; i < windows; ++i) {
    uint64_t page = order[i] * premap + (policy == WindowPolicy::kForward ? 0 : rng() % premap);
    auto& r = sys.records[i];
    r = {};
    r.flags = IOMMU_PGFAULT_FLAGS_LAST_PAGE;
    r.dev_id = 1;
    r.perm = IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE;
    r.addr = kRegionBase + page * kPageSize;
    r.length = policy == WindowPolicy::kHint ? static_cast<uint32_t>(premap * kPageSize) : 0;
    r.cookie = static_cast<uint32_t>(i + 1);
  }

  uint64_t done = 0;
  std::chrono::nanoseconds spent{0};
  uint64_t cpu = 0;
  while (done < faults) {
    uint64_t n = std::min<uint64_t>(windows, faults - done);
    sys.cursor = 0;
    sys.end = n;
    auto t0 = std::chrono::steady_clock::now();
    uint64_t c0 = thread_cpu_ns();
    for (;;) {
      auto d = queue.on_readable();
      if (!d || !d->more) break;
    }
    spent += std::chrono::steady_clock::now() - t0;
    cpu += thread_cpu_ns() - c0;
    done += n;
    queue.unmap_all();  // start the next pass from an empty IOAS (not timed)
  }
  double n = static_cast<double>(faults);
  return {static_cast<double>(spent.count()) / n, static_cast<double>(cpu) / n, backend.maps, faults};
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t faults = argc > 1 ? std::strtoull(argv[1], nullptr, 0) : 1000000;
  fmt::print("bench_fault_engine: {} faults per row, single-record groups, 64 records per read\n", faults);
  fmt::print("{:>8} {:>8} {:>14} {:>14} {:>10}\n", "policy", "premap", "wall ns/fault", "cpu ns/fault", "MAP calls");
  for (auto policy : {WindowPolicy::kForward, WindowPolicy::kAligned, WindowPolicy::kHint}) {
    for (uint64_t premap : {1, 16, 512}) {
      auto r = run(faults, premap, policy);
      fmt::print("{:>8} {:>8} {:>14.1f} {:>14.1f} {:>10}\n", window_policy_name(policy), premap, r.ns_per_fault,
                 r.cpu_ns_per_fault, r.maps);
    }
  }
  return 0;
}
