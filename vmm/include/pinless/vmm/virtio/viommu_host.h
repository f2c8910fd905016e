// NestedViommuHost: the virtio-iommu model's host side (virtio::ViommuHost) over
// iommu::NestedDomains, i.e. iommufd: guest domains as IOASes filled by IOAS_COPY, endpoints
// moved by replace-attach. Only translates between the two vocabularies; errno values pass
// through unchanged for the model's status mapping. Borrows the NestedDomains.
// Thread-compatible (the model calls it under its lock).
#pragma once

#include "pinless/iommu/nested_domains.h"
#include "pinless/virtio/iommu/host.h"

namespace pinless::vmm {

class NestedViommuHost final : public virtio::ViommuHost {
 public:
  explicit NestedViommuHost(iommu::NestedDomains& domains) : domains_(domains) {}

  Status attach(uint32_t endpoint, uint32_t domain) override { return domains_.attach(endpoint, domain); }
  Status attach_bypass(uint32_t endpoint) override { return domains_.attach_identity(endpoint); }
  Status block(uint32_t endpoint) override { return domains_.block(endpoint); }
  Status map(uint32_t domain, Range<Iova> iova, Gpa gpa, virtio::DmaAccess access) override {
    auto perm = access.read && access.write ? iommu::Perm::kReadWrite
                : access.write              ? iommu::Perm::kWrite
                                            : iommu::Perm::kRead;
    return domains_.map(domain, iova, gpa, perm);
  }
  Status unmap(uint32_t domain, Range<Iova> iova) override { return domains_.unmap(domain, iova); }
  void destroy_domain(uint32_t domain) override { domains_.destroy(domain); }
  std::vector<Range<Iova>> reserved(uint32_t endpoint) override { return domains_.reserved(endpoint); }

 private:
  iommu::NestedDomains& domains_;
};

}  // namespace pinless::vmm
