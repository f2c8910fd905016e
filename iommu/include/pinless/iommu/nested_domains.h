// NestedDomains: a guest IOMMU's domains carried onto iommufd (docs/viommu.md). Guest
// RAM is mapped once, at IOVA = GPA, into a source IOAS that no device is ever attached to,
// so it pins nothing. Each guest domain is one IOAS of its own; a guest MAP is an IOAS_COPY
// out of the source, so the domain's pages are the source's pages: a page mapped into
// several domains, or twice into one, is pinned and charged once, where shadowing each MAP
// with its own IOAS_MAP would pin and charge it again. Endpoints move between their domain's
// IOAS, the identity IOAS (bypass: guest-physical addresses) and an empty IOAS (blocked) by
// replace-attach, through one callback per endpoint (a VFIO device's attach_pt), so this
// class knows nothing of VFIO. An endpoint without a callback (an emulated device: it does
// no DMA of its own) is accepted and changes nothing on the host.
// Owns the source, blocked and domain IOASes; borrows the Iommufd context (which outlives
// it). Thread-compatible (the virtio-iommu model serialises its calls).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "pinless/base/result.h"
#include "pinless/base/types.h"
#include "pinless/iommu/iommufd_backend.h"

namespace pinless::iommu {

class NestedDomains {
 public:
  using AttachFn = std::function<Status(uint32_t pt_id)>;
  struct RamRegion {
    Range<Gpa> gpa;
    Hva hva;
  };

  // Maps every RAM region into a fresh source IOAS and allocates the empty blocking IOAS.
  // `identity_pt` is the IOAS (or HWPT) a bypassed endpoint is attached to.
  [[nodiscard]] static Result<std::unique_ptr<NestedDomains>> create(Iommufd& ctx, std::span<const RamRegion> ram,
                                                                     uint32_t identity_pt);

  // An endpoint with a host device behind it; `reserved` are its IOVA holes (for PROBE).
  void add_endpoint(uint32_t id, AttachFn attach, std::vector<Range<Iova>> reserved = {});

  // Endpoint `ep` into guest domain `domain` (its IOAS created on first use).
  [[nodiscard]] Status attach(uint32_t ep, uint32_t domain);
  [[nodiscard]] Status attach_identity(uint32_t ep);
  [[nodiscard]] Status block(uint32_t ep);
  // [iova) of `domain` -> guest RAM at `gpa`. EFAULT when the guest range is not wholly inside
  // one RAM region (a hole, beyond RAM, a BAR); ENOENT for a domain that does not exist.
  [[nodiscard]] Status map(uint32_t domain, Range<Iova> iova, Gpa gpa, Perm perm);
  // Every mapping of `domain` wholly inside `iova` (the kernel never splits one: ENOENT).
  [[nodiscard]] Status unmap(uint32_t domain, Range<Iova> iova);
  // Destroys the domain's IOAS and every mapping in it (no endpoint may be attached).
  void destroy(uint32_t domain);

  std::vector<Range<Iova>> reserved(uint32_t ep) const;
  size_t domain_count() const { return domains_.size(); }
  uint64_t mapped_bytes(uint32_t domain) const;
  // What the host did for the guest's MAPs and UNMAPs (successful calls only). Mapped bytes
  // count IOVA per domain: a page in two domains counts twice here, though it is pinned once.
  struct Stats {
    uint64_t maps = 0, unmaps = 0;
    uint64_t map_ns = 0, unmap_ns = 0;  // time in IOAS_COPY / IOAS_UNMAP
    uint64_t mapped_bytes = 0, peak_mapped_bytes = 0;  // all domains
  };
  Stats stats() const;
  uint32_t source_ioas() const { return source_->ioas_id(); }
  uint32_t blocked_ioas() const { return blocked_->ioas_id(); }
  std::optional<uint32_t> domain_ioas(uint32_t domain) const;

 private:
  struct Endpoint {
    AttachFn attach;
    std::vector<Range<Iova>> reserved;
  };
  NestedDomains(Iommufd& ctx, std::unique_ptr<IommufdBackend> source, std::unique_ptr<IommufdBackend> blocked,
                std::vector<RamRegion> ram, uint32_t identity_pt)
      : ctx_(ctx), source_(std::move(source)), blocked_(std::move(blocked)), ram_(std::move(ram)),
        identity_pt_(identity_pt) {}
  [[nodiscard]] Status move(uint32_t ep, uint32_t pt_id);

  Iommufd& ctx_;
  std::unique_ptr<IommufdBackend> source_;
  std::unique_ptr<IommufdBackend> blocked_;
  std::vector<RamRegion> ram_;
  uint32_t identity_pt_;
  std::map<uint32_t, Endpoint> endpoints_;
  Stats stats_;
  // Declared last: destroyed before the source and the blocking IOAS.
  std::map<uint32_t, std::unique_ptr<IommufdBackend>> domains_;
};

}  // namespace pinless::iommu
