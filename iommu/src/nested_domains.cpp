// NestedDomains: guest domains as IOASes filled by IOAS_COPY from one never-attached source.
#include "pinless/iommu/nested_domains.h"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

namespace pinless::iommu {

Result<std::unique_ptr<NestedDomains>> NestedDomains::create(Iommufd& ctx, std::span<const RamRegion> ram,
                                                             uint32_t identity_pt) {
  auto source = PINLESS_TRY(IommufdBackend::create(ctx));
  for (const RamRegion& r : ram) {
    // No device is attached to the source IOAS: this records the pages, it pins nothing.
    PINLESS_TRY_VOID(source->map(Iova(r.gpa.start.value()), r.hva, r.gpa.size, Perm::kReadWrite));
  }
  auto blocked = PINLESS_TRY(IommufdBackend::create(ctx));
  return std::unique_ptr<NestedDomains>(new NestedDomains(ctx, std::move(source), std::move(blocked),
                                                          std::vector<RamRegion>(ram.begin(), ram.end()), identity_pt));
}

void NestedDomains::add_endpoint(uint32_t id, AttachFn attach, std::vector<Range<Iova>> reserved) {
  endpoints_[id] = Endpoint{std::move(attach), std::move(reserved)};
}

Status NestedDomains::move(uint32_t ep, uint32_t pt_id) {
  auto it = endpoints_.find(ep);
  if (it == endpoints_.end() || !it->second.attach) return {};  // emulated: no DMA of its own
  return it->second.attach(pt_id);
}

Status NestedDomains::attach(uint32_t ep, uint32_t domain) {
  auto it = domains_.find(domain);
  bool created = it == domains_.end();
  if (created) it = domains_.emplace(domain, PINLESS_TRY(IommufdBackend::create(ctx_))).first;
  if (auto s = move(ep, it->second->ioas_id()); !s) {
    if (created) domains_.erase(it);
    return std::unexpected(std::move(s).error().within(fmt::format("endpoint {:#x} -> domain {}", ep, domain)));
  }
  return {};
}

Status NestedDomains::attach_identity(uint32_t ep) { return move(ep, identity_pt_); }

Status NestedDomains::block(uint32_t ep) { return move(ep, blocked_->ioas_id()); }

Status NestedDomains::map(uint32_t domain, Range<Iova> iova, Gpa gpa, Perm perm) {
  auto it = domains_.find(domain);
  if (it == domains_.end()) return fail("viommu map", ENOENT, fmt::format("no domain {}", domain));
  for (const RamRegion& r : ram_) {
    if (r.gpa.contains(gpa, iova.size)) {
      auto t0 = std::chrono::steady_clock::now();
      PINLESS_TRY_VOID(it->second->copy_from(*source_, Iova(gpa.value()), iova.start, iova.size, perm));
      stats_.map_ns += uint64_t(std::chrono::nanoseconds(std::chrono::steady_clock::now() - t0).count());
      ++stats_.maps;
      stats_.mapped_bytes += iova.size;
      stats_.peak_mapped_bytes = std::max(stats_.peak_mapped_bytes, stats_.mapped_bytes);
      return {};
    }
  }
  return fail("viommu map", EFAULT,
              fmt::format("guest-physical {:#x}+{:#x} is not guest RAM", gpa.value(), iova.size));
}

Status NestedDomains::unmap(uint32_t domain, Range<Iova> iova) {
  auto it = domains_.find(domain);
  if (it == domains_.end()) return fail("viommu unmap", ENOENT, fmt::format("no domain {}", domain));
  uint64_t before = it->second->mapped_bytes();
  auto t0 = std::chrono::steady_clock::now();
  PINLESS_TRY_VOID(it->second->unmap(iova.start, iova.size));
  stats_.unmap_ns += uint64_t(std::chrono::nanoseconds(std::chrono::steady_clock::now() - t0).count());
  ++stats_.unmaps;
  stats_.mapped_bytes -= std::min(stats_.mapped_bytes, before - it->second->mapped_bytes());
  return {};
}

void NestedDomains::destroy(uint32_t domain) {
  auto it = domains_.find(domain);
  if (it == domains_.end()) return;
  stats_.mapped_bytes -= std::min(stats_.mapped_bytes, it->second->mapped_bytes());
  domains_.erase(it);
}

NestedDomains::Stats NestedDomains::stats() const { return stats_; }

std::vector<Range<Iova>> NestedDomains::reserved(uint32_t ep) const {
  auto it = endpoints_.find(ep);
  return it == endpoints_.end() ? std::vector<Range<Iova>>{} : it->second.reserved;
}

uint64_t NestedDomains::mapped_bytes(uint32_t domain) const {
  auto it = domains_.find(domain);
  return it == domains_.end() ? 0 : it->second->mapped_bytes();
}

std::optional<uint32_t> NestedDomains::domain_ioas(uint32_t domain) const {
  auto it = domains_.find(domain);
  if (it == domains_.end()) return std::nullopt;
  return it->second->ioas_id();
}

}  // namespace pinless::iommu
