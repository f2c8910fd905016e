// bench_populate: how the parallel pre-population of guest RAM (iommu/populate.h) scales
// with threads, without any IOMMU: runs anywhere, e.g. on a multi-core host that has no
// /dev/vfio. For each size and backing it allocates fresh guest RAM the way pinless does
// (GuestMemory: memfd, MAP_SHARED) and times populate_pages with 1, 2, ... N threads,
// alternating the thread counts within each repetition so drift hits all of them. Prints
// the median ms and GiB/s per thread count. Measurements only.
//
//   bench_populate [--reps R] [--threads N] [--backing 4k|thp|hugetlb] [SIZE_MIB ...]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "pinless/base/clock.h"
#include "pinless/base/sys.h"
#include "pinless/iommu/populate.h"
#include "pinless/vmm/memory/guest_memory.h"

using namespace pinless;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 5;
  unsigned max_threads = iommu::online_cpus();
  std::string backing = "4k";
  std::vector<uint64_t> sizes_mib;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--threads" && i + 1 < argc) max_threads = static_cast<unsigned>(std::atoi(argv[++i]));
    else if (a == "--backing" && i + 1 < argc) backing = argv[++i];
    else sizes_mib.push_back(std::strtoull(a.c_str(), nullptr, 0));
  }
  if (sizes_mib.empty()) sizes_mib = {256, 512, 1024};
  std::printf("# bench_populate: backing %s, %d reps, %u online CPUs, threads 1..%u, median of reps\n",
              backing.c_str(), reps, iommu::online_cpus(), max_threads);
  std::printf("%-8s %-8s %10s %8s %10s\n", "size", "threads", "ms", "GiB/s", "speedup");
  for (uint64_t mib : sizes_mib) {
    uint64_t size = mib * kMiB;
    std::map<unsigned, std::vector<double>> ms;
    for (int r = 0; r < reps; ++r) {
      for (unsigned k = 0; k < max_threads; ++k) {
        // Rotate the starting thread count per repetition: no count always runs first.
        unsigned t = (k + static_cast<unsigned>(r)) % max_threads + 1;
        auto mem = vmm::GuestMemory::create(linux_sys(), {size, backing == "hugetlb", backing == "thp"});
        if (!mem) {
          std::fprintf(stderr, "bench_populate: %s\n", mem.error().message().c_str());
          return 1;
        }
        Hva hva = mem->regions().front().hva();
        uint64_t t0 = monotonic_ns();
        auto res = iommu::populate_pages(hva, size, t);
        ms[t].push_back((monotonic_ns() - t0) / 1e6);
        if (!res.used_madvise) std::printf("# note: MADV_POPULATE_WRITE failed, pages were touched\n");
      }
    }
    double base = median(ms[1]);
    for (auto& [t, v] : ms) {
      double m = median(v);
      std::printf("%-8s %-8u %10.1f %8.2f %10.2f\n", (std::to_string(mib) + "M").c_str(), t, m,
                  (size / double(kGiB)) / (m / 1e3), base / m);
    }
  }
  return 0;
}
