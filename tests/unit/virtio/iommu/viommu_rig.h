// Test rig for ViommuModel: a recording fake ViommuHost that keeps its own idea of the host
// (how each endpoint is translated, each host domain's mappings) and notes every breach of
// the host contract, request builders in the wire format, and a consistency check between
// the model's state and the fake host. Thread-compatible.
#pragma once

#include <doctest/doctest.h>
#include <spdlog/fmt/fmt.h>

#include <array>
#include <cerrno>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pinless/virtio/iommu/host.h"
#include "pinless/virtio/iommu/model.h"
#include "pinless/virtio/iommu/wire.h"

namespace pinless::virtio::testing {

namespace w = pinless::virtio::viommu;

// Status bytes as the guest reads them (the values are part of the wire format).
inline constexpr uint8_t OK = 0, IOERR = 1, UNSUPP = 2, DEVERR = 3, INVAL = 4, RANGE = 5,
                         NOENT = 6, FAULT = 7, NOMEM = 8;

class FakeViommuHost : public ViommuHost {
 public:
  enum class Path { kBypass, kBlocked, kDomain };
  struct HostPath {
    Path path = Path::kBypass;
    uint32_t domain = 0;
    bool operator==(const HostPath&) const = default;
  };
  struct HostMap {
    uint64_t last = 0;  // inclusive
    uint64_t gpa = 0;
    DmaAccess access;
  };

  std::vector<std::string> calls;          // every call but reserved(), in order
  std::map<std::string, int> fail_next;    // method name -> errno for its next call
  std::map<uint32_t, HostPath> paths;      // absent = bypass (the state before the device)
  std::map<uint32_t, std::map<uint64_t, HostMap>> domains;
  std::map<uint32_t, std::vector<Range<Iova>>> reserved_ranges;
  int reserved_queries = 0;
  std::vector<std::string> violations;     // host contract breaches by the model

  HostPath path_of(uint32_t ep) const {
    auto it = paths.find(ep);
    return it == paths.end() ? HostPath{} : it->second;
  }

  Status attach(uint32_t ep, uint32_t d) override {
    calls.push_back(fmt::format("attach {:#x} {}", ep, d));
    if (int e = take("attach")) return fail("attach", e);
    domains[d];
    paths[ep] = {Path::kDomain, d};
    return {};
  }
  Status attach_bypass(uint32_t ep) override {
    calls.push_back(fmt::format("bypass {:#x}", ep));
    if (int e = take("bypass")) return fail("attach_bypass", e);
    paths[ep] = {Path::kBypass, 0};
    return {};
  }
  Status block(uint32_t ep) override {
    calls.push_back(fmt::format("block {:#x}", ep));
    if (int e = take("block")) return fail("block", e);
    paths[ep] = {Path::kBlocked, 0};
    return {};
  }
  Status map(uint32_t d, Range<Iova> iova, Gpa gpa, DmaAccess a) override {
    calls.push_back(fmt::format("map {} {:#x}+{:#x} {:#x} {}{}", d, iova.start.value(), iova.size,
                                gpa.value(), a.read ? "r" : "", a.write ? "w" : ""));
    if (int e = take("map")) return fail("map", e);
    auto dit = domains.find(d);
    if (dit == domains.end()) return breach("map into unknown domain", ENOENT);
    if (!a.read && !a.write) return breach("map without permission", EINVAL);
    if (iova.size == 0) return breach("empty map", EINVAL);
    const uint64_t lo = iova.start.value(), hi = lo + (iova.size - 1);
    auto it = dit->second.upper_bound(hi);
    if (it != dit->second.begin() && std::prev(it)->second.last >= lo)
      return breach("overlapping map", EADDRINUSE);
    dit->second[lo] = {hi, gpa.value(), a};
    return {};
  }
  Status unmap(uint32_t d, Range<Iova> iova) override {
    calls.push_back(fmt::format("unmap {} {:#x}+{:#x}", d, iova.start.value(), iova.size));
    auto dit = domains.find(d);
    const uint64_t lo = iova.start.value();
    int e = take("unmap");
    if (e == ENOENT && dit != domains.end()) dit->second.erase(lo);  // gone, as the host says
    if (e) return fail("unmap", e);
    if (dit == domains.end()) return breach("unmap in unknown domain", ENOENT);
    auto it = dit->second.find(lo);
    if (it == dit->second.end() || it->second.last != lo + (iova.size - 1))
      return breach("unmap of something never mapped", ENOENT);
    dit->second.erase(it);
    return {};
  }
  void destroy_domain(uint32_t d) override {
    calls.push_back(fmt::format("destroy {}", d));
    for (const auto& [ep, p] : paths) {
      if (p == HostPath{Path::kDomain, d})
        violations.push_back(fmt::format("destroy {} in use", d));
    }
    domains.erase(d);
  }
  std::vector<Range<Iova>> reserved(uint32_t ep) override {
    ++reserved_queries;
    auto it = reserved_ranges.find(ep);
    return it == reserved_ranges.end() ? std::vector<Range<Iova>>{} : it->second;
  }

 private:
  int take(const std::string& what) {
    auto it = fail_next.find(what);
    if (it == fail_next.end()) return 0;
    int e = it->second;
    fail_next.erase(it);
    return e;
  }
  Status breach(const std::string& what, int err) {
    violations.push_back(what);
    return fail(what, err);
  }
};

// Requests: the device-readable part only, as the transport hands it over.
inline std::vector<uint8_t> attach_req(uint32_t d, uint32_t ep, uint32_t flags = 0) {
  std::vector<uint8_t> r(w::attach::kReadable);
  r[0] = uint8_t(w::RequestType::kAttach);
  w::put_le32(r, w::attach::kDomain, d);
  w::put_le32(r, w::attach::kEndpoint, ep);
  w::put_le32(r, w::attach::kFlags, flags);
  return r;
}
inline std::vector<uint8_t> detach_req(uint32_t d, uint32_t ep) {
  std::vector<uint8_t> r(w::detach::kReadable);
  r[0] = uint8_t(w::RequestType::kDetach);
  w::put_le32(r, w::detach::kDomain, d);
  w::put_le32(r, w::detach::kEndpoint, ep);
  return r;
}
inline std::vector<uint8_t> map_req(uint32_t d, uint64_t vs, uint64_t ve, uint64_t ps,
                                    uint32_t flags = w::map::kFlagRead | w::map::kFlagWrite) {
  std::vector<uint8_t> r(w::map::kReadable);
  r[0] = uint8_t(w::RequestType::kMap);
  w::put_le32(r, w::map::kDomain, d);
  w::put_le64(r, w::map::kVirtStart, vs);
  w::put_le64(r, w::map::kVirtEnd, ve);
  w::put_le64(r, w::map::kPhysStart, ps);
  w::put_le32(r, w::map::kFlags, flags);
  return r;
}
inline std::vector<uint8_t> unmap_req(uint32_t d, uint64_t vs, uint64_t ve) {
  std::vector<uint8_t> r(w::unmap::kReadable);
  r[0] = uint8_t(w::RequestType::kUnmap);
  w::put_le32(r, w::unmap::kDomain, d);
  w::put_le64(r, w::unmap::kVirtStart, vs);
  w::put_le64(r, w::unmap::kVirtEnd, ve);
  return r;
}
inline std::vector<uint8_t> probe_req(uint32_t ep) {
  std::vector<uint8_t> r(w::probe::kReadable);
  r[0] = uint8_t(w::RequestType::kProbe);
  w::put_le32(r, w::probe::kEndpoint, ep);
  return r;
}

// Three endpoints as a VIOT would number them (00:01.0, 00:02.0, 00:03.0), a 48-bit aperture.
inline ViommuConfig test_config() {
  ViommuConfig c;
  c.endpoints = {0x8, 0x10, 0x18};
  c.input_end = (1ull << 48) - 1;
  return c;
}
inline constexpr uint64_t kAllFeatures = ViommuConfig::kDefaultFeatures;

struct Rig {
  FakeViommuHost host;
  ViommuConfig cfg;
  std::unique_ptr<ViommuModel> model;

  explicit Rig(ViommuConfig c = test_config(), uint64_t features = kAllFeatures) : cfg(c) {
    auto m = ViommuModel::create(host, cfg);
    REQUIRE(m);
    model = std::move(*m);
    model->set_features(features);
  }
  // The model holds a reference to `host`: a rig never moves.
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;
  // Sends one request with a 4-byte writable part; the used length must be 4.
  uint8_t send(const std::vector<uint8_t>& req) {
    std::array<uint8_t, 4> tail{0xaa, 0xaa, 0xaa, 0xaa};
    const uint32_t used = model->handle(req, tail);
    REQUIRE(used == 4);
    CHECK(tail[1] == 0);
    CHECK(tail[2] == 0);
    CHECK(tail[3] == 0);
    return tail[0];
  }
  uint8_t attach(uint32_t d, uint32_t ep, uint32_t flags = 0) {
    return send(attach_req(d, ep, flags));
  }
  uint8_t detach(uint32_t d, uint32_t ep) { return send(detach_req(d, ep)); }
  uint8_t map(uint32_t d, uint64_t vs, uint64_t ve, uint64_t ps,
              uint32_t flags = w::map::kFlagRead | w::map::kFlagWrite) {
    return send(map_req(d, vs, ve, ps, flags));
  }
  uint8_t unmap(uint32_t d, uint64_t vs, uint64_t ve) { return send(unmap_req(d, vs, ve)); }
  std::vector<ViommuMapping> mappings(uint32_t d) const {
    auto s = model->state();
    auto it = s.domains.find(d);
    return it == s.domains.end() ? std::vector<ViommuMapping>{} : it->second.mappings;
  }
  std::vector<std::string> take_calls() { return std::exchange(host.calls, {}); }
};

// "" when the model's state holds together and matches the fake host; else the first problem.
inline std::string inconsistency(const ViommuModel& model, const FakeViommuHost& host,
                                 const ViommuConfig& cfg) {
  using P = FakeViommuHost::Path;
  const auto s = model.state();
  if (!host.violations.empty()) return "host contract: " + host.violations.front();
  const bool dflt_bypass = (cfg.features & w::kFBypassConfig) && s.bypass;
  for (const auto& [ep, e] : s.endpoints) {
    const auto hp = host.path_of(ep);
    const P want_model = e.host == ViommuModel::HostPath::kBypass    ? P::kBypass
                         : e.host == ViommuModel::HostPath::kBlocked ? P::kBlocked
                                                                     : P::kDomain;
    if (hp.path != want_model) return fmt::format("endpoint {:#x}: host path differs", ep);
    if (!e.domain) {
      if (hp.path != (dflt_bypass ? P::kBypass : P::kBlocked))
        return fmt::format("unattached endpoint {:#x} not at the default", ep);
      continue;
    }
    auto dit = s.domains.find(*e.domain);
    if (dit == s.domains.end()) return fmt::format("endpoint {:#x} in a missing domain", ep);
    if (!dit->second.endpoints.count(ep)) return fmt::format("domain lacks endpoint {:#x}", ep);
    const auto want = dit->second.bypass ? FakeViommuHost::HostPath{P::kBypass, 0}
                                         : FakeViommuHost::HostPath{P::kDomain, *e.domain};
    if (hp != want) return fmt::format("endpoint {:#x}: host translates otherwise", ep);
  }
  uint64_t total = 0;
  const uint64_t g = (cfg.page_size_mask & (~cfg.page_size_mask + 1)) - 1;
  for (const auto& [d, dom] : s.domains) {
    if (d < cfg.domain_start || d > cfg.domain_end) return fmt::format("domain {} out of range", d);
    if (dom.endpoints.empty()) return fmt::format("domain {} outlived its endpoints", d);
    for (uint32_t ep : dom.endpoints) {
      auto eit = s.endpoints.find(ep);
      if (eit == s.endpoints.end() || eit->second.domain != d)
        return fmt::format("domain {} lists endpoint {:#x} wrongly", d, ep);
    }
    total += dom.mappings.size();
    if (dom.bypass) {
      if (!dom.mappings.empty()) return fmt::format("bypass domain {} has mappings", d);
      if (host.domains.count(d)) return fmt::format("bypass domain {} exists on the host", d);
      continue;
    }
    auto hit = host.domains.find(d);
    if (hit == host.domains.end()) return fmt::format("domain {} missing on the host", d);
    std::map<uint64_t, FakeViommuHost::HostMap> want;
    uint64_t prev_end = 0;
    bool first = true;
    for (const auto& m : dom.mappings) {
      if (m.virt_end < m.virt_start) return "inverted mapping";
      if (!first && m.virt_start <= prev_end) return fmt::format("overlap in domain {}", d);
      if ((m.virt_start & g) || (m.phys_start & g) || ((m.virt_end + 1) & g)) return "unaligned";
      if (m.virt_start < cfg.input_start || m.virt_end > cfg.input_end) return "outside input";
      if (m.virt_start <= cfg.msi_end && cfg.msi_start <= m.virt_end) return "over MSI";
      prev_end = m.virt_end;
      first = false;
      const DmaAccess a{(m.flags & w::map::kFlagRead) != 0, (m.flags & w::map::kFlagWrite) != 0};
      if (a.read || a.write) want[m.virt_start] = {m.virt_end, m.phys_start, a};
    }
    if (want.size() != hit->second.size()) return fmt::format("domain {}: host map count", d);
    for (const auto& [lo, hm] : want) {
      auto it = hit->second.find(lo);
      if (it == hit->second.end() || it->second.last != hm.last || it->second.gpa != hm.gpa ||
          !(it->second.access == hm.access))
        return fmt::format("domain {}: host mapping at {:#x} differs", d, lo);
    }
  }
  for (const auto& [d, maps] : host.domains) {
    auto it = s.domains.find(d);
    if (it == s.domains.end() || it->second.bypass) return fmt::format("host leaks domain {}", d);
  }
  const auto st = model.stats();
  if (st.domains != s.domains.size() || st.mappings != total) return "stats gauges differ";
  return "";
}

}  // namespace pinless::virtio::testing
