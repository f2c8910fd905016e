#include "pinless/iommu/populate.h"

#include <sched.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <system_error>
#include <thread>
#include <vector>

namespace pinless::iommu {
namespace {

// Slice boundaries are aligned to this so that a 2 MiB page (THP or hugetlbfs) is never
// faulted by two threads at once (they would contend on the same page, one of them waiting).
constexpr uint64_t kSliceAlign = 2 * kMiB;

bool populate_slice(uint8_t* p, uint64_t len, uint64_t page_size, const MadviseFn& fn) {
  if (fn(p, len) == 0) return true;
  for (uint64_t off = 0; off < len; off += page_size) {
    volatile uint8_t* b = p + off;
    *b = *b;  // write fault, contents unchanged (before boot: nobody else writes here)
  }
  return false;
}

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// Cut points (absolute addresses) splitting [start, end) into at most n slices.
std::vector<uint64_t> cut_points(uint64_t start, uint64_t end, unsigned n, uint64_t page_size) {
  uint64_t size = end - start;
  uint64_t align = size / n >= kSliceAlign ? std::max(page_size, kSliceAlign) : page_size;
  std::vector<uint64_t> cuts{start};
  for (unsigned i = 1; i < n; ++i) {
    uint64_t c = std::min(end, align_up(start + size / n * i, align));
    if (c > cuts.back()) cuts.push_back(c);
  }
  if (end > cuts.back()) cuts.push_back(end);
  return cuts;
}

}  // namespace

unsigned online_cpus() {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return std::max(1, CPU_COUNT(&set));
}

unsigned populate_thread_count(uint64_t size, unsigned requested, unsigned cpus, uint64_t min_chunk) {
  uint64_t pages = std::max<uint64_t>(size / kPageSize, 1);
  if (requested > 0) return static_cast<unsigned>(std::min<uint64_t>(requested, pages));
  uint64_t n = std::min<uint64_t>(std::max(cpus, 1u), size / std::max<uint64_t>(min_chunk, kPageSize));
  return n >= 2 ? static_cast<unsigned>(n) : 0;
}

int madvise_populate_write(void* addr, size_t len) {
  return ::madvise(addr, len, MADV_POPULATE_WRITE) == 0 ? 0 : -errno;
}

PopulateResult populate_pages(Hva hva, uint64_t size, unsigned threads, uint64_t page_size, const MadviseFn& fn) {
  PopulateResult res{size, true, 0};
  if (size == 0) return res;
  uint64_t pages = std::max<uint64_t>(size / page_size, 1);
  unsigned n = static_cast<unsigned>(std::clamp<uint64_t>(threads, 1, pages));
  auto cuts = cut_points(hva.value(), hva.value() + size, n, page_size);
  size_t slices = cuts.size() - 1;
  std::atomic<bool> all_madvise{true};
  auto work = [&](size_t i) {
    auto* p = reinterpret_cast<uint8_t*>(cuts[i]);
    if (!populate_slice(p, cuts[i + 1] - cuts[i], page_size, fn)) all_madvise = false;
  };
  std::vector<std::thread> pool;
  size_t inline_from = slices - 1;  // the caller always does the last slice
  for (size_t i = 0; i + 1 < slices; ++i) {
    try {
      pool.emplace_back(work, i);
    } catch (const std::system_error&) {
      inline_from = i;  // no more threads: the rest runs here
      break;
    }
  }
  for (size_t i = inline_from; i < slices; ++i) work(i);
  for (auto& t : pool) t.join();
  res.used_madvise = all_madvise;
  res.threads = static_cast<unsigned>(pool.size() + 1);
  return res;
}

}  // namespace pinless::iommu
