// ViommuModel: construction, request dispatch and the tail, device configuration, features,
// reset and the counters. The request types themselves live in attach.cpp, map.cpp and
// probe.cpp.
#include "pinless/virtio/iommu/model.h"

#include <algorithm>
#include <cerrno>
#include <exception>
#include <limits>

namespace pinless::virtio {

using namespace viommu;

Result<std::unique_ptr<ViommuModel>> ViommuModel::create(ViommuHost& host, ViommuConfig config) {
  auto bad = [](const char* what) { return fail("virtio-iommu config", EINVAL, what); };
  if (config.page_size_mask == 0) return bad("page_size_mask is 0 (the driver refuses it)");
  if (config.input_start > config.input_end) return bad("input_range is empty");
  if (config.domain_start > config.domain_end) return bad("domain_range is empty");
  if ((config.features & (kFVersion1 | kFMapUnmap)) != (kFVersion1 | kFMapUnmap))
    return bad("VERSION_1 and MAP_UNMAP must be offered (the driver requires both)");
  if (config.features & kFBypass) return bad("BYPASS is superseded by BYPASS_CONFIG");
  if (config.msi_start > config.msi_end) return bad("the MSI window is empty");
  if (config.max_mappings_per_domain == 0) return bad("max_mappings_per_domain is 0");
  std::sort(config.endpoints.begin(), config.endpoints.end());
  config.endpoints.erase(std::unique(config.endpoints.begin(), config.endpoints.end()),
                         config.endpoints.end());

  std::unique_ptr<ViommuModel> m(new ViommuModel(host, std::move(config)));
  // The host starts with every endpoint in bypass; block them if that is not the default.
  if (!m->default_bypass()) {
    for (auto& [ep, e] : m->endpoints_) {
      PINLESS_TRY_VOID(m->set_host_path(ep, e, HostPath::kBlocked));
    }
  }
  return m;
}

ViommuModel::ViommuModel(ViommuHost& host, ViommuConfig config)
    : host_(host),
      cfg_(std::move(config)),
      offered_(cfg_.features),
      granule_(cfg_.page_size_mask & (~cfg_.page_size_mask + 1)),
      log_(logger("viommu")),
      bypass_(cfg_.bypass ? 1 : 0) {
  for (uint32_t ep : cfg_.endpoints) endpoints_.emplace(ep, Endpoint{});
}

uint32_t ViommuModel::handle(std::span<const uint8_t> request, std::span<uint8_t> reply) noexcept {
  try {
    std::lock_guard lock(mu_);
    try {
      return dispatch(request, reply);
    } catch (const std::exception& e) {
      // Only allocation can throw, and state is allocated before the host acts (see
      // do_attach, do_map), so the shadow state still covers everything the host holds.
      log_->error("virtio-iommu request failed inside the device: {}", e.what());
      return reply.size() >= kTailSize ? finish(reply, Code::kDevErr) : 0;
    }
  } catch (...) {
    return 0;
  }
}

uint32_t ViommuModel::dispatch(std::span<const uint8_t> req, Reply reply) {
  if (req.size() < kHeadSize) {
    ++stats_.requests[0];
    return drop("shorter than its head", req.size(), reply.size());
  }
  const uint8_t type = req[0];
  const size_t readable = readable_size(type);
  ++stats_.requests[readable ? type : 0];
  if (readable == 0) return drop("unknown type", req.size(), reply.size());
  // Bytes after the readable part are ignored (room for extensions); fewer cannot be parsed.
  if (req.size() < readable) return drop("shorter than its type", req.size(), reply.size());
  if (reply.size() < kTailSize) return drop("no room for the tail", req.size(), reply.size());
  if (reply.size() > std::numeric_limits<uint32_t>::max())
    return drop("writable part beyond 4 GiB", req.size(), reply.size());

  switch (RequestType(type)) {
    case RequestType::kAttach:
      return finish(reply, do_attach(req));
    case RequestType::kDetach:
      return finish(reply, do_detach(req));
    case RequestType::kMap:
      if (!(features_ & kFMapUnmap)) return drop("MAP without MAP_UNMAP", req.size(), reply.size());
      return finish(reply, do_map(req));
    case RequestType::kUnmap:
      if (!(features_ & kFMapUnmap))
        return drop("UNMAP without MAP_UNMAP", req.size(), reply.size());
      return finish(reply, do_unmap(req));
    case RequestType::kProbe:
      if (!(features_ & kFProbe)) return drop("PROBE without F_PROBE", req.size(), reply.size());
      return do_probe(req, reply);
  }
  return drop("unknown type", req.size(), reply.size());
}

uint32_t ViommuModel::finish(Reply reply, Code status) {
  std::fill(reply.begin(), reply.end() - kTailSize, uint8_t{0});
  return write_tail(reply, status);
}

uint32_t ViommuModel::write_tail(Reply reply, Code status) {
  auto tail = reply.last(kTailSize);
  tail[0] = uint8_t(status);
  tail[1] = tail[2] = tail[3] = 0;
  ++stats_.status[size_t(status)];
  return uint32_t(reply.size());
}

uint32_t ViommuModel::drop(const char* why, size_t req_len, size_t reply_len) {
  ++stats_.dropped;
  if (warn_.allow()) {
    log_->warn("virtio-iommu request dropped (used length 0): {} ({} readable, {} writable bytes)",
               why, req_len, reply_len);
  }
  return 0;
}

ViommuModel::Code ViommuModel::host_failure(HostOp op, const Error& e) {
  const int err = e.err();
  Code c = Code::kDevErr;
  if (err == ENOMEM || err == ENOSPC) {
    c = Code::kNomem;  // ENOMEM also stands for RLIMIT_MEMLOCK; ENOSPC for entry limits
  } else if (err == EFAULT) {
    c = Code::kFault;
  } else if (op == HostOp::kAttach && (err == EINVAL || err == EOPNOTSUPP || err == EBUSY)) {
    c = Code::kUnsupp;  // the host cannot put this endpoint in that domain
  }
  if (warn_.allow()) log_->warn("virtio-iommu: host refused: {} -> {}", e.message(), name(c));
  return c;
}

bool ViommuModel::default_bypass() const {
  // With BYPASS_CONFIG offered, config.bypass decides even if the driver did not accept the
  // feature (spec 5.13.6); without it, unattached endpoints get no DMA.
  return (offered_ & kFBypassConfig) && bypass_ != 0;
}

void ViommuModel::config_read(uint64_t offset, std::span<uint8_t> data) const {
  std::array<uint8_t, config::kSize> c{};
  {
    std::lock_guard lock(mu_);
    c[config::kBypass] = bypass_;
  }
  put_le64(c, config::kPageSizeMask, cfg_.page_size_mask);
  put_le64(c, config::kInputStart, cfg_.input_start);
  put_le64(c, config::kInputEnd, cfg_.input_end);
  put_le32(c, config::kDomainStart, cfg_.domain_start);
  put_le32(c, config::kDomainEnd, cfg_.domain_end);
  put_le32(c, config::kProbeSize, cfg_.probe_size);
  for (size_t i = 0; i < data.size(); ++i) {
    // offset + i may wrap: compare without adding.
    data[i] = (offset < c.size() && i < c.size() - offset) ? c[offset + i] : 0;
  }
}

void ViommuModel::config_write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  const bool hits_bypass = offset <= config::kBypass && config::kBypass - offset < data.size();
  if (!hits_bypass || data.size() != 1) {
    if (warn_.allow()) {
      log_->warn("virtio-iommu: config write of {} bytes at {:#x} outside bypass ignored",
                 data.size(), offset);
    }
  }
  if (!hits_bypass) return;
  if (!(features_ & kFBypassConfig)) {
    if (warn_.allow()) log_->warn("virtio-iommu: bypass written without BYPASS_CONFIG, ignored");
    return;
  }
  const uint8_t v = data[config::kBypass - offset] & 1;  // bits 1-7 are not ours to keep
  if (v == bypass_) return;
  bypass_ = v;
  log_->info("virtio-iommu: unattached endpoints now {}", v ? "bypass" : "blocked");
  for (auto& [ep, e] : endpoints_) {
    if (!e.domain) apply_default(ep, e);
  }
}

void ViommuModel::set_features(uint64_t negotiated) {
  std::lock_guard lock(mu_);
  features_ = negotiated & offered_;
}

uint64_t ViommuModel::features() const {
  std::lock_guard lock(mu_);
  return features_;
}

void ViommuModel::reset() {
  std::lock_guard lock(mu_);
  features_ = 0;
  // Endpoints leave their domains first, so no domain is destroyed while still in use.
  for (auto& [ep, e] : endpoints_) {
    e.domain.reset();
    apply_default(ep, e);
    e.reserved.reset();
  }
  for (auto& [d, dom] : domains_) {
    if (!dom.bypass) host_.destroy_domain(d);
  }
  if (!domains_.empty()) {
    log_->info("virtio-iommu reset: {} domains and {} mappings dropped", domains_.size(), mapping_count_);
  }
  domains_.clear();
  mapping_count_ = 0;
}

ViommuModel::Stats ViommuModel::stats() const {
  std::lock_guard lock(mu_);
  Stats s = stats_;
  s.domains = domains_.size();
  s.mappings = mapping_count_;
  return s;
}

ViommuModel::State ViommuModel::state() const {
  std::lock_guard lock(mu_);
  State s;
  s.bypass = bypass_;
  s.features = features_;
  for (const auto& [ep, e] : endpoints_) s.endpoints[ep] = {e.domain, e.host};
  for (const auto& [d, dom] : domains_) {
    auto& out = s.domains[d];
    out.bypass = dom.bypass;
    out.endpoints = dom.endpoints;
    for (const auto& [start, m] : dom.mappings) {
      out.mappings.push_back({start, m.virt_end, m.phys_start, m.flags});
    }
  }
  return s;
}

}  // namespace pinless::virtio
