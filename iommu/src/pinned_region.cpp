#include "pinless/iommu/pinned_region.h"

#include <cerrno>

#include <fmt/format.h>

#include "pinless/base/clock.h"
#include "pinless/base/log.h"
#include "pinless/base/size.h"

namespace pinless::iommu {

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
  unsigned threads = spec.populate ? populate_thread_count(spec.gpa.size, spec.populate_threads, online_cpus(),
                                                           spec.populate_min_chunk)
                                   : 0;
  if (threads > 0) {
    uint64_t t0 = monotonic_ns();
    auto pop = populate_pages(spec.hva, spec.gpa.size, threads, kPageSize, madvise_fn);
    r.populate_us_ = (monotonic_ns() - t0) / 1000;
    r.populate_threads_ = pop.threads;
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
  logger("iommu")->info("{}: pinned {} in {} map call(s), populate {} us ({} threads), map {} us", ctx,
                        format_size(r.bytes_), r.maps_.size(), r.populate_us_, r.populate_threads_, r.map_us_);
  return r;
}

PinnedRegion::PinnedRegion(PinnedRegion&& o) noexcept
    : maps_(std::move(o.maps_)),
      accounting_(std::exchange(o.accounting_, nullptr)),
      bytes_(std::exchange(o.bytes_, 0)),
      skipped_(o.skipped_),
      populate_us_(o.populate_us_),
      map_us_(o.map_us_),
      populate_threads_(o.populate_threads_) {}

PinnedRegion::~PinnedRegion() {
  maps_.clear();  // unmap before releasing the charge
  if (accounting_ != nullptr) accounting_->release_static(bytes_);
}

}  // namespace pinless::iommu
