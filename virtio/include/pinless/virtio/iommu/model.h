// ViommuModel: the guest-visible state of a virtio-iommu device and its request semantics,
// without a transport. The transport gathers one request chain into its device-readable
// bytes and its device-writable bytes and calls handle(); the model validates the request
// against its shadow state (domains, endpoints, per-domain interval map of mappings), asks
// the ViommuHost to apply it, records it only if the host succeeded, and writes the tail.
// Everything in a request is guest-controlled: any bytes, any lengths, any order. Nothing it
// sends can crash the model, make it read or write outside the given spans, or throw.
// Thread-safe: one mutex; requests may come from a vCPU thread while the event loop reads
// stats(). Host calls are made with the mutex held. Owns its state; borrows the host.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <vector>

#include "pinless/base/log.h"
#include "pinless/base/result.h"
#include "pinless/base/types.h"
#include "pinless/virtio/iommu/host.h"
#include "pinless/virtio/iommu/wire.h"

namespace pinless::virtio {

struct ViommuConfig {
  static constexpr uint64_t kDefaultFeatures =
      viommu::kFVersion1 | viommu::kFInputRange | viommu::kFDomainRange | viommu::kFMapUnmap |
      viommu::kFProbe | viommu::kFBypassConfig;

  std::vector<uint32_t> endpoints;  // endpoint IDs that exist (from the VIOT)
  uint64_t input_start = 0;         // input_range, inclusive: the host aperture
  uint64_t input_end = ~0ull;
  uint64_t page_size_mask = 0x40201000;  // 4K | 2M | 1G; the lowest bit is the granule
  uint32_t domain_start = 1;             // domain_range, inclusive
  uint32_t domain_end = 65535;
  uint32_t probe_size = 512;
  bool bypass = true;                // config.bypass after system reset
  uint64_t features = kDefaultFeatures;  // offered; must hold VERSION_1 and MAP_UNMAP, not BYPASS
  uint64_t msi_start = 0xfee00000;   // the MSI doorbell window (x86), reported by PROBE
  uint64_t msi_end = 0xfeefffff;
  size_t max_mappings_per_domain = size_t(1) << 20;  // beyond: NOMEM
};

// One MAP as recorded: [virt_start, virt_end] (inclusive) -> phys_start, with its flags.
struct ViommuMapping {
  uint64_t virt_start = 0;
  uint64_t virt_end = 0;
  uint64_t phys_start = 0;
  uint32_t flags = 0;
  constexpr bool operator==(const ViommuMapping&) const = default;
};

class ViommuModel {
 public:
  struct Stats {
    std::array<uint64_t, 6> requests{};  // by type 1..5; [0] counts unknown types
    std::array<uint64_t, viommu::kStatusCount> status{};  // by status code written
    uint64_t dropped = 0;   // requests used with length 0 (malformed, unknown, unavailable)
    uint64_t domains = 0;   // current
    uint64_t mappings = 0;  // current, all domains
  };
  // How the host currently translates an endpoint.
  enum class HostPath : uint8_t { kBypass, kBlocked, kDomain };
  // A copy of the guest-visible state, for tests, invariant checks and debugging.
  struct State {
    struct Endpoint {
      std::optional<uint32_t> domain;
      HostPath host = HostPath::kBypass;
    };
    struct Domain {
      bool bypass = false;
      std::set<uint32_t> endpoints;
      std::vector<ViommuMapping> mappings;  // by virt_start
    };
    std::map<uint32_t, Endpoint> endpoints;
    std::map<uint32_t, Domain> domains;
    uint8_t bypass = 0;
    uint64_t features = 0;
  };

  // EINVAL for a config the Linux driver or the spec rejects (zero page mask, empty ranges,
  // missing VERSION_1/MAP_UNMAP, BYPASS offered). Blocks every endpoint on the host when
  // unattached endpoints must not bypass (bypass = 0, or BYPASS_CONFIG not offered).
  [[nodiscard]] static Result<std::unique_ptr<ViommuModel>> create(ViommuHost& host,
                                                                   ViommuConfig config);
  ViommuModel(const ViommuModel&) = delete;
  ViommuModel& operator=(const ViommuModel&) = delete;

  // Serves one request: `request` = the device-readable bytes, `reply` = the device-writable
  // bytes of the chain. Returns the used length: reply.size() once the tail (the last 4 bytes
  // of `reply`, every byte before it zeroed or filled with PROBE properties) is written, or 0
  // with nothing written when the request cannot be parsed (shorter than its type's readable
  // part, writable part shorter than the tail), its type is unknown, or the type is not
  // available (PROBE without F_PROBE, MAP/UNMAP without F_MAP_UNMAP).
  [[nodiscard]] uint32_t handle(std::span<const uint8_t> request,
                                std::span<uint8_t> reply) noexcept;

  // Guest accesses to the 40-byte device configuration at any offset and size: bytes outside
  // it read as zero; writes reach only `bypass` (bit 0 kept), and only with BYPASS_CONFIG
  // negotiated. Changing bypass re-targets every unattached endpoint on the host.
  void config_read(uint64_t offset, std::span<uint8_t> data) const;
  void config_write(uint64_t offset, std::span<const uint8_t> data);

  uint64_t device_features() const { return offered_; }
  // The driver's features after FEATURES_OK; bits not offered are dropped.
  void set_features(uint64_t negotiated);
  uint64_t features() const;

  // Device reset: every endpoint detached (back to bypass or blocked per config.bypass, which
  // a device reset keeps), every domain destroyed on the host, features cleared.
  void reset();

  Stats stats() const;
  State state() const;
  // Calls `fn` with the model's mutex held: the host's own counters (which only calls made
  // under that mutex change) can then be read from another thread.
  template <class Fn>
  void with_host_locked(Fn&& fn) const {
    std::lock_guard lock(mu_);
    fn();
  }

 private:
  struct Mapping {
    uint64_t virt_end = 0;
    uint64_t phys_start = 0;
    uint32_t flags = 0;
  };
  struct Domain {
    bool bypass = false;
    std::set<uint32_t> endpoints;
    std::map<uint64_t, Mapping> mappings;  // virt_start -> rest; never overlapping
  };
  struct Endpoint {
    std::optional<uint32_t> domain;
    HostPath host = HostPath::kBypass;
    uint32_t host_domain = 0;  // when host == kDomain
    std::optional<std::vector<std::pair<uint64_t, uint64_t>>> reserved;  // inclusive, cached
  };
  using Reply = std::span<uint8_t>;
  using Code = viommu::StatusCode;
  enum class HostOp : uint8_t { kAttach, kMap, kUnmap };

  ViommuModel(ViommuHost& host, ViommuConfig config);

  // model.cpp
  uint32_t dispatch(std::span<const uint8_t> req, Reply reply);
  uint32_t finish(Reply reply, Code status);      // zeroes the writable part, then the tail
  uint32_t write_tail(Reply reply, Code status);  // the tail only
  uint32_t drop(const char* why, size_t req_len, size_t reply_len);
  Code host_failure(HostOp op, const Error& e);
  bool default_bypass() const;
  // attach.cpp
  Code do_attach(std::span<const uint8_t> req);
  Code do_detach(std::span<const uint8_t> req);
  Status set_host_path(uint32_t ep, Endpoint& e, HostPath path, uint32_t domain = 0);
  void apply_default(uint32_t ep, Endpoint& e);
  void leave_domain(uint32_t ep, Endpoint& e);
  const std::vector<std::pair<uint64_t, uint64_t>>& reserved_of(uint32_t ep, Endpoint& e);
  // map.cpp
  static bool overlaps(const std::map<uint64_t, Mapping>& m, uint64_t lo, uint64_t hi);
  Code do_map(std::span<const uint8_t> req);
  Code do_unmap(std::span<const uint8_t> req);
  // probe.cpp
  uint32_t do_probe(std::span<const uint8_t> req, Reply reply);

  ViommuHost& host_;
  const ViommuConfig cfg_;
  const uint64_t offered_;
  const uint64_t granule_;
  std::shared_ptr<spdlog::logger> log_;
  mutable std::mutex mu_;
  uint64_t features_ = 0;
  uint8_t bypass_ = 1;
  std::map<uint32_t, Endpoint> endpoints_;
  std::map<uint32_t, Domain> domains_;
  uint64_t mapping_count_ = 0;
  Stats stats_;
  RateLimit warn_{10, 1000};
};

}  // namespace pinless::virtio
