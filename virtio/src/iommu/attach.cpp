// ViommuModel: ATTACH and DETACH, and how the host translates each endpoint (a guest domain,
// bypass or blocked). Re-attaching goes straight from the old domain to the new one (the host
// replace is atomic), so an endpoint never passes through bypass on the way.
#include <algorithm>

#include "pinless/virtio/iommu/model.h"

namespace pinless::virtio {

using namespace viommu;

ViommuModel::Code ViommuModel::do_attach(std::span<const uint8_t> req) {
  // Trusts nothing: every field below is the guest's.
  const uint32_t domain = le32(req, attach::kDomain);
  const uint32_t ep = le32(req, attach::kEndpoint);
  const uint32_t flags = le32(req, attach::kFlags);
  const uint32_t reserved = le32(req, attach::kReserved);
  log_->debug("ATTACH endpoint {:#x} domain {} flags {:#x}", ep, domain, flags);

  if (reserved != 0 || (flags & ~attach::kFlagBypass) != 0) return Code::kInval;
  const bool bypass = flags & attach::kFlagBypass;
  // The flag exists only with BYPASS_CONFIG; without it, it is an unknown bit.
  if (bypass && !(features_ & kFBypassConfig)) return Code::kInval;
  auto eit = endpoints_.find(ep);
  if (eit == endpoints_.end()) return Code::kNoent;
  if (domain < cfg_.domain_start || domain > cfg_.domain_end) return Code::kRange;
  auto dit = domains_.find(domain);
  if (dit != domains_.end() && dit->second.bypass != bypass) return Code::kInval;
  Endpoint& e = eit->second;
  if (e.domain == domain) return Code::kOk;  // already there: nothing to detach or attach

  const bool created = dit == domains_.end();
  if (!bypass && !created) {
    // The endpoint's reserved IOVA must not already be mapped in the domain it joins: the
    // host would refuse, and the guest was told those addresses are unusable.
    for (const auto& [lo, hi] : reserved_of(ep, e)) {
      if (overlaps(dit->second.mappings, lo, hi)) return Code::kUnsupp;
    }
  }
  // Allocate before the host acts; undone below if it refuses.
  if (created) dit = domains_.emplace(domain, Domain{.bypass = bypass}).first;
  dit->second.endpoints.insert(ep);
  Status s = set_host_path(ep, e, bypass ? HostPath::kBypass : HostPath::kDomain, domain);
  if (!s) {
    dit->second.endpoints.erase(ep);
    if (created) {
      domains_.erase(dit);
      if (!bypass) host_.destroy_domain(domain);
    }
    return host_failure(HostOp::kAttach, s.error());
  }
  if (e.domain) leave_domain(ep, e);
  e.domain = domain;
  return Code::kOk;
}

ViommuModel::Code ViommuModel::do_detach(std::span<const uint8_t> req) {
  const uint32_t domain = le32(req, detach::kDomain);
  const uint32_t ep = le32(req, detach::kEndpoint);
  log_->debug("DETACH endpoint {:#x} domain {}", ep, domain);

  auto eit = endpoints_.find(ep);
  if (eit == endpoints_.end()) return Code::kNoent;
  Endpoint& e = eit->second;
  if (e.domain != domain) return Code::kInval;  // also a domain that does not exist
  Status s = set_host_path(ep, e, default_bypass() ? HostPath::kBypass : HostPath::kBlocked);
  if (!s) return host_failure(HostOp::kAttach, s.error());  // still attached, as before
  leave_domain(ep, e);
  return Code::kOk;
}

Status ViommuModel::set_host_path(uint32_t ep, Endpoint& e, HostPath path, uint32_t domain) {
  if (e.host == path && (path != HostPath::kDomain || e.host_domain == domain)) return {};
  Status s = path == HostPath::kBypass    ? host_.attach_bypass(ep)
             : path == HostPath::kBlocked ? host_.block(ep)
                                          : host_.attach(ep, domain);
  if (!s) return s;
  e.host = path;
  e.host_domain = path == HostPath::kDomain ? domain : 0;
  return {};
}

void ViommuModel::apply_default(uint32_t ep, Endpoint& e) {
  const HostPath target = default_bypass() ? HostPath::kBypass : HostPath::kBlocked;
  Status s = set_host_path(ep, e, target);
  if (s) return;
  log_->error("virtio-iommu: endpoint {:#x} cannot be put in {}: {}", ep,
              target == HostPath::kBypass ? "bypass" : "blocked", s.error().message());
  // Never leave it on a domain that is about to go: no DMA is the safe fallback.
  if (target == HostPath::kBypass && e.host == HostPath::kDomain) {
    Status b = set_host_path(ep, e, HostPath::kBlocked);
    if (!b) log_->error("virtio-iommu: endpoint {:#x} cannot be blocked either: {}", ep,
                        b.error().message());
  }
}

void ViommuModel::leave_domain(uint32_t ep, Endpoint& e) {
  auto dit = domains_.find(*e.domain);
  e.domain.reset();
  if (dit == domains_.end()) return;
  Domain& dom = dit->second;
  dom.endpoints.erase(ep);
  if (!dom.endpoints.empty()) return;
  // A domain dies with its last endpoint, mappings and all.
  log_->debug("domain {} destroyed with {} mappings", dit->first, dom.mappings.size());
  if (!dom.bypass) host_.destroy_domain(dit->first);
  mapping_count_ -= dom.mappings.size();
  domains_.erase(dit);
}

const std::vector<std::pair<uint64_t, uint64_t>>& ViommuModel::reserved_of(uint32_t ep,
                                                                           Endpoint& e) {
  if (e.reserved) return *e.reserved;
  std::vector<std::pair<uint64_t, uint64_t>> v;
  for (const Range<Iova>& r : host_.reserved(ep)) {
    if (r.size == 0) continue;
    const uint64_t lo = r.start.value();
    const uint64_t last = r.size - 1;
    v.emplace_back(lo, last > ~0ull - lo ? ~0ull : lo + last);  // a range may end at 2^64
  }
  std::sort(v.begin(), v.end());
  // Merge overlapping or touching ranges so that PROBE reports disjoint regions.
  std::vector<std::pair<uint64_t, uint64_t>> merged;
  for (const auto& [lo, hi] : v) {
    if (!merged.empty() && (merged.back().second == ~0ull || lo <= merged.back().second + 1)) {
      merged.back().second = std::max(merged.back().second, hi);
    } else {
      merged.emplace_back(lo, hi);
    }
  }
  e.reserved = std::move(merged);
  return *e.reserved;
}

}  // namespace pinless::virtio
