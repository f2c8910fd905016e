// NestedDomains: guest domains as IOASes filled by IOAS_COPY from one never-attached source.
#include "pinless/iommu/nested_domains.h"

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
      return it->second->copy_from(*source_, Iova(gpa.value()), iova.start, iova.size, perm);
    }
  }
  return fail("viommu map", EFAULT,
              fmt::format("guest-physical {:#x}+{:#x} is not guest RAM", gpa.value(), iova.size));
}

Status NestedDomains::unmap(uint32_t domain, Range<Iova> iova) {
  auto it = domains_.find(domain);
  if (it == domains_.end()) return fail("viommu unmap", ENOENT, fmt::format("no domain {}", domain));
  return it->second->unmap(iova.start, iova.size);
}

void NestedDomains::destroy(uint32_t domain) { domains_.erase(domain); }

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
