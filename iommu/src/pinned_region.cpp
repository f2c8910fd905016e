#include "pinless/iommu/pinned_region.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <thread>

#include <fmt/format.h>

#include "pinless/base/clock.h"
#include "pinless/base/log.h"
#include "pinless/base/size.h"

namespace pinless::iommu {

int madvise_populate_write(void* addr, size_t len) {
  return ::madvise(addr, len, MADV_POPULATE_WRITE) == 0 ? 0 : -errno;
}

namespace {
bool populate_chunk(uint8_t* p, uint64_t len, uint64_t page_size, const MadviseFn& fn) {
  if (fn(p, len) == 0) return true;
  for (uint64_t off = 0; off < len; off += page_size) {
    volatile uint8_t* b = p + off;
    *b = *b;  // write fault, contents unchanged (before boot: nobody else writes here)
  }
  return false;
}
}  // namespace

PopulateResult populate_pages(Hva hva, uint64_t size, unsigned threads, uint64_t page_size, const MadviseFn& fn) {
  PopulateResult res{size, true};
  uint64_t pages = size / page_size;
  threads = static_cast<unsigned>(std::clamp<uint64_t>(threads, 1, std::max<uint64_t>(pages, 1)));
  if (threads == 1) {
    res.used_madvise = populate_chunk(ptr_of<uint8_t>(hva), size, page_size, fn);
    return res;
  }
  std::atomic<bool> all_madvise{true};
  std::vector<std::thread> pool;
  uint64_t per = (pages + threads - 1) / threads * page_size;
  for (uint64_t off = 0; off < size; off += per) {
    uint64_t len = std::min(per, size - off);
    pool.emplace_back([&, off, len] {
      if (!populate_chunk(ptr_of<uint8_t>(hva + off), len, page_size, fn)) all_madvise = false;
    });
  }
  for (auto& t : pool) t.join();
  res.used_madvise = all_madvise;
  return res;
}

Result<PinnedRegion> PinnedRegion::create(DmaBackend& backend, const PinnedRegionSpec& spec,
                                          const std::vector<Range<Iova>>& allowed, PinAccounting* accounting,
                                          const MadviseFn& madvise_fn) {
  std::string ctx = fmt::format("pin region {} gpa 0x{:x}+0x{:x}", spec.name, spec.gpa.start.value(), spec.gpa.size);
  if (!spec.gpa.start.aligned(kPageSize) || spec.gpa.size % kPageSize != 0 || !spec.hva.aligned(kPageSize)) {
    return fail("pin region", EINVAL, ctx, "region must be page aligned");
  }
  auto pieces = clip_to_ranges({Iova(spec.gpa.start.value()), spec.gpa.size}, allowed);
  uint64_t total = 0;
  for (const auto& p : pieces) total += p.size;
  if (accounting != nullptr && !accounting->fits(total)) {
    return fail("pin region", ENOMEM, ctx,
                fmt::format("pinning {} exceeds the pin limit {} ({} pinned already); raise the limit or use "
                            "fault-driven DMA for this region", format_size(total), format_size(accounting->limit()),
                            format_size(accounting->total())));
  }

  PinnedRegion r;
  r.skipped_ = spec.gpa.size - total;
  if (spec.populate) {
    uint64_t t0 = monotonic_ns();
    auto pop = populate_pages(spec.hva, spec.gpa.size, spec.populate_threads, kPageSize, madvise_fn);
    r.populate_us_ = (monotonic_ns() - t0) / 1000;
    if (!pop.used_madvise) logger("iommu")->info("{}: MADV_POPULATE_WRITE unavailable, touched pages", ctx);
  }
  uint64_t t0 = monotonic_ns();
  for (const auto& p : pieces) {
    Hva hva = spec.hva + (p.start.value() - spec.gpa.start.value());
    auto m = DmaMapping::create(backend, p.start, hva, p.size, spec.perm);
    if (!m) return std::unexpected(std::move(m.error()).within(ctx));  // r's mappings unmap
    r.maps_.push_back(std::move(*m));
    r.bytes_ += p.size;
  }
  r.map_us_ = (monotonic_ns() - t0) / 1000;
  if (accounting != nullptr) {
    accounting->charge_static(r.bytes_);
    r.accounting_ = accounting;
  }
  if (r.skipped_ != 0) {
    logger("iommu")->info("{}: {} bytes lie in IOVA holes and are not mapped", ctx, r.skipped_);
  }
  logger("iommu")->info("{}: pinned {} in {} map call(s), populate {} us, map {} us", ctx, format_size(r.bytes_),
                        r.maps_.size(), r.populate_us_, r.map_us_);
  return r;
}

PinnedRegion::PinnedRegion(PinnedRegion&& o) noexcept
    : maps_(std::move(o.maps_)),
      accounting_(std::exchange(o.accounting_, nullptr)),
      bytes_(std::exchange(o.bytes_, 0)),
      skipped_(o.skipped_),
      populate_us_(o.populate_us_),
      map_us_(o.map_us_) {}

PinnedRegion::~PinnedRegion() {
  maps_.clear();  // unmap before releasing the charge
  if (accounting_ != nullptr) accounting_->release_static(bytes_);
}

}  // namespace pinless::iommu
