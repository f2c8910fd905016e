// Populating guest RAM before it is pinned. A MAP of untouched memory (IOAS_MAP or type1
// MAP_DMA) faults and zeroes every page inside the kernel, on the calling thread; that is
// most of the pin phase (docs/benchmarks.md). Faulting the pages first with
// MADV_POPULATE_WRITE from several threads, each on its own slice, spreads the zeroing over
// the CPUs; the MAP then only pins pages that are already there.
// With one thread a separate pass buys nothing (the MAP would do the same work) and costs a
// second walk, so the automatic choice skips it. Thread-safe (stateless).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "pinless/base/types.h"

namespace pinless::iommu {

// Slices smaller than this are not worth a thread (creating one costs ~0.1 ms; faulting
// 64 MiB of 4 KiB pages costs a few ms even on fast hosts).
constexpr uint64_t kPopulateMinChunk = 64 * kMiB;

// CPUs this process may run on (sched_getaffinity), at least 1.
unsigned online_cpus();

// How many threads pre-populate a region of `size` bytes; 0 = no separate pass (the MAP
// populates). `requested` > 0 is taken as given (capped at one thread per page);
// `requested` == 0 picks min(cpus, size / min_chunk) and returns 0 when that is below 2.
unsigned populate_thread_count(uint64_t size, unsigned requested, unsigned cpus,
                               uint64_t min_chunk = kPopulateMinChunk);

// Pre-faults [hva, hva + size) writable. `madvise_fn` is the seam for tests (returns 0 or
// -errno); on EINVAL (kernel < 5.14) or any error it touches every page instead, reading and
// writing back one byte so existing contents (a loaded kernel image) survive.
using MadviseFn = std::function<int(void* addr, size_t len)>;
int madvise_populate_write(void* addr, size_t len);

struct PopulateResult {
  uint64_t bytes = 0;
  bool used_madvise = true;  // false if at least one slice fell back to touching
  unsigned threads = 0;      // slices actually populated concurrently
};

// Splits the range into `threads` slices whose inner boundaries are 2 MiB aligned (so no
// huge page is faulted by two threads) and populates them concurrently, the calling thread
// taking the last slice. If a thread cannot be started its slice runs on the caller.
PopulateResult populate_pages(Hva hva, uint64_t size, unsigned threads, uint64_t page_size = kPageSize,
                              const MadviseFn& madvise_fn = madvise_populate_write);

}  // namespace pinless::iommu
