#include "pinless/iommu/dma_domain.h"

#include <fmt/format.h>

#include <optional>

#include "pinless/base/log.h"
#include "pinless/base/size.h"
#include "pinless/iommu/dma_errors.h"
#include "pinless/iommu/fault_engine.h"
#include "pinless/iommu/fault_queue.h"
#include "pinless/iommu/fault_support.h"
#include "pinless/iommu/iommufd.h"
#include "pinless/iommu/pin_accounting.h"
#include "pinless/iommu/pinned_region.h"

namespace pinless::iommu {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kFallbackHint =
    "; --dma-fallback=pin maps and pins the region instead, --dma-fallback=fail stops";

std::string hex(uint64_t v) { return fmt::format("{:#x}", v); }

// Appends one DmaPhase to `out` when it goes out of scope, so an early error return still
// leaves the step (with the attrs known so far) in the caller's list.
class PhaseRecord {
 public:
  PhaseRecord(std::vector<DmaPhase>& out, std::string name, std::vector<std::pair<std::string, std::string>> attrs = {})
      : out_(out), phase_{std::move(name), std::move(attrs), Clock::now(), {}} {}
  ~PhaseRecord() {
    phase_.end = Clock::now();
    out_.push_back(std::move(phase_));
  }
  PhaseRecord(const PhaseRecord&) = delete;
  PhaseRecord& operator=(const PhaseRecord&) = delete;
  void attr(std::string key, std::string value) { phase_.attrs.emplace_back(std::move(key), std::move(value)); }

 private:
  std::vector<DmaPhase>& out_;
  DmaPhase phase_;
};

// "ram+1G": the region's name and the offset of `delta` bytes into it.
std::string piece_name(const DmaRegion& r, uint64_t delta = 0) {
  return fmt::format("{}+{}", r.name, format_size(r.offset + delta));
}

}  // namespace

struct DmaDomain::Impl {
  Impl(Sys& s, DmaBackend& b, DmaPolicy p) : sys(s), backend(b), policy(std::move(p)) {}

  // Returns the reason fault mode is impossible, or nothing when every device now sits on a
  // fault-capable HWPT.
  std::optional<FaultSupportError> setup_fault();
  // Maps and pins every region that is not (or no longer) a fault region.
  Status pin_regions(const std::vector<Range<Iova>>& allowed, std::vector<DmaPhase>& phases);
  // Hands the fault regions to a new FaultEngine and starts the FaultQueue.
  Status start_faults(const std::vector<Range<Iova>>& allowed);

  Sys& sys;
  DmaBackend& backend;
  DmaPolicy policy;
  std::vector<DmaDevice> devices;
  FaultSupport* faults = nullptr;  // the backend's, once fault mode is set up
  std::string fallback;            // reason name when fallback_pin took effect
  PinAccounting accounting;
  FaultQueue::Drained served;  // totals over all on_fault_readable() calls
  // Members below are destroyed in the destructor's explicit order.
  std::vector<PinnedRegion> pins;
  std::vector<int> pin_of_region;                      // index into pins, or -1
  std::vector<std::vector<uint32_t>> fault_of_region;  // engine regions of each region
  std::optional<IommufdFault> fault;
  std::vector<IommufdObject> hwpts;
  std::unique_ptr<FaultEngine> engine;
  std::unique_ptr<FaultQueue> queue;
};

std::optional<FaultSupportError> DmaDomain::Impl::setup_fault() {
  FaultSupport* fs = backend.fault_support();
  if (fs == nullptr) {
    return FaultSupportError{
        FaultUnsupported::kType1,
        Error("fault-driven DMA", EOPNOTSUPP, "VFIO type1 backend",
              std::string("I/O page faults reach user space only through iommufd (/dev/iommu, kernel >= 6.13); "
                          "use --iommu-backend=iommufd") + kFallbackHint)};
  }
  for (const auto& d : devices) {
    if (!d.can_fault) {
      return FaultSupportError{
          FaultUnsupported::kNoPri,
          Error("fault-driven DMA", EOPNOTSUPP, d.name + ": " + d.why_not,
                std::string("this device cannot send page requests, so a dma=fault region would never fault "
                            "and its DMA would hit unmapped memory") + kFallbackHint)};
    }
  }
  auto f = fs->alloc_fault_queue();
  if (!f) return classify_fault_queue_alloc(std::move(f.error()));
  fault.emplace(std::move(*f));
  for (auto& d : devices) {
    auto h = fs->alloc_fault_hwpt(d.dev_id, fault->id());
    if (!h) return classify_fault_hwpt_alloc(std::move(h.error()).within(d.name));
    uint32_t hwpt_id = h->id();
    hwpts.push_back(std::move(*h));
    if (auto a = d.attach(hwpt_id); !a) return classify_fault_attach(std::move(a.error()), d.name);
  }
  faults = fs;
  return std::nullopt;
}

Status DmaDomain::Impl::pin_regions(const std::vector<Range<Iova>>& allowed, std::vector<DmaPhase>& phases) {
  auto log = logger("dma");
  pin_of_region.assign(policy.regions.size(), -1);
  for (size_t i = 0; i < policy.regions.size(); ++i) {
    const DmaRegion& r = policy.regions[i];
    if (r.fault) continue;
    PhaseRecord phase(phases, "pin_region", {{"gpa", hex(r.gpa.value())}});
    auto t0 = Clock::now();
    PinnedRegionSpec spec;
    spec.name = piece_name(r);
    spec.gpa = {Gpa(r.iova.start.value()), r.iova.size};  // PinnedRegion maps at this address
    spec.hva = r.hva;
    PinnedRegion pin = PINLESS_TRY(PinnedRegion::create(backend, spec, allowed, &accounting));
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
    phase.attr("bytes", std::to_string(pin.mapped_bytes()));
    phase.attr("ms", fmt::format("{:.1f}", double(us) / 1000));
    phase.attr("populate_ms", fmt::format("{:.1f}", double(pin.populate_us()) / 1000));
    phase.attr("map_ms", fmt::format("{:.1f}", double(pin.map_us()) / 1000));
    phase.attr("populate_threads", std::to_string(pin.populate_threads()));
    log->info("pinned {} at IOVA {:#x} in {:.1f} ms ({} in IOVA holes skipped)", format_size(pin.mapped_bytes()),
              r.iova.start.value(), double(us) / 1000, format_size(pin.skipped_bytes()));
    pin_of_region[i] = int(pins.size());
    pins.push_back(std::move(pin));
  }
  return {};
}

Status DmaDomain::Impl::start_faults(const std::vector<Range<Iova>>& allowed) {
  auto log = logger("dma");
  engine = std::make_unique<FaultEngine>(accounting);
  engine->set_reclaim(policy.reclaim);
  fault_of_region.resize(policy.regions.size());
  for (size_t i = 0; i < policy.regions.size(); ++i) {
    const DmaRegion& r = policy.regions[i];
    if (!r.fault) continue;
    // Only what the IOMMU can address: a fault elsewhere is answered INVALID.
    for (const auto& part : clip_to_ranges(r.iova, allowed)) {
      uint64_t delta = part.start.value() - r.iova.start.value();
      FaultRegionSpec spec;
      spec.name = piece_name(r, delta);
      spec.gpa = {Gpa(part.start.value()), part.size};  // the engine maps and matches faults here
      spec.hva = r.hva + delta;
      spec.fault_policy = r.fault_policy;
      fault_of_region[i].push_back(PINLESS_TRY(engine->add_region(spec)));
      log->info("fault region {} at IOVA {:#x}: premap {} pages, window {}", format_size(part.size),
                part.start.value(), r.fault_policy.premap_pages, window_policy_name(r.fault_policy.window));
    }
  }
  queue = std::make_unique<FaultQueue>(sys, fault->fd.get(), *engine, backend);
  log->info("dma-ready: ioas={} hwpt={} fault={}", faults->ioas_id(), hwpts.empty() ? 0 : hwpts.front().id(),
            fault->id());
  return {};
}

DmaDomain::DmaDomain(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<DmaDomain>> DmaDomain::create(Sys& sys, DmaBackend& backend, std::vector<DmaDevice> devices,
                                                     DmaPolicy policy, std::vector<DmaPhase>* phases) {
  std::vector<DmaPhase> unused;
  std::vector<DmaPhase>& steps = phases != nullptr ? *phases : unused;
  auto impl = std::make_unique<Impl>(sys, backend, std::move(policy));
  impl->devices = std::move(devices);
  impl->accounting.set_limit(impl->policy.pin_limit);
  // Owned from here: any early return tears down what exists, in order.
  std::unique_ptr<DmaDomain> self(new DmaDomain(std::move(impl)));
  Impl& m = *self->impl_;

  bool want_fault = false;
  for (const auto& r : m.policy.regions) want_fault = want_fault || r.fault;
  if (want_fault) {
    PhaseRecord phase(steps, "dma_fault_setup");
    if (auto why = m.setup_fault()) {
      phase.attr("result", fault_unsupported_name(why->reason));
      if (!m.policy.fallback_pin) return std::unexpected(std::move(why->error));
      logger("dma")->warn("fault-driven DMA is not available ({}); pinning the dma=fault regions instead "
                          "(--dma-fallback=pin)", why->error.message());
      m.fallback = fault_unsupported_name(why->reason);
      for (auto& r : m.policy.regions) r.fault = false;
      want_fault = false;
    } else {
      phase.attr("result", "ok");
    }
  }

  // Static pins first (the device may DMA there from its first instruction), then the fault
  // regions, which map nothing now.
  std::vector<Range<Iova>> allowed = PINLESS_TRY(backend.iova_ranges());
  PINLESS_TRY_VOID(m.pin_regions(allowed, steps));
  if (want_fault) PINLESS_TRY_VOID(m.start_faults(allowed));
  return self;
}

void DmaDomain::release_devices() {
  for (auto& d : impl_->devices) {
    if (d.detach) std::exchange(d.detach, nullptr)();
  }
}

DmaDomain::~DmaDomain() {
  Impl& m = *impl_;
  if (m.queue) m.queue->unmap_all();
  release_devices();
  m.queue.reset();
  m.engine.reset();
  m.hwpts.clear();
  m.fault.reset();
  m.pins.clear();
}

int DmaDomain::fault_fd() const { return impl_->queue ? impl_->fault->fd.get() : -1; }

Result<bool> DmaDomain::on_fault_readable() {
  Impl& m = *impl_;
  if (!m.queue) return false;
  auto d = PINLESS_TRY(m.queue->on_readable());
  auto& s = m.served;
  s.reads += d.reads, s.records += d.records, s.groups += d.groups, s.invalid += d.invalid;
  s.maps += d.maps, s.unmaps += d.unmaps, s.refused += d.refused;
  return d.more;
}

uint64_t DmaDomain::pinned_bytes() const { return impl_->accounting.total(); }

Status DmaDomain::set_fault_policy(uint64_t ram_offset, std::optional<uint64_t> premap_pages,
                                   std::optional<WindowPolicy> window) {
  Impl& m = *impl_;
  for (size_t i = 0; i < m.policy.regions.size(); ++i) {
    DmaRegion& r = m.policy.regions[i];
    if (r.offset != ram_offset) continue;
    const std::string ctx = fmt::format("region {}+{:#x}", r.name, r.offset);
    if (!r.fault) {
      return fail("DMA policy change", ENOTSUP, ctx,
                  m.fallback.empty()
                      ? "the region is pinned; switching it to fault-driven DMA at run time is not built (start it with "
                        "--ram-region ...,dma=fault)"
                      : "fault-driven DMA fell back to pinning at start (" + m.fallback + ")");
    }
    FaultPolicy p = r.fault_policy;
    if (premap_pages) p.premap_pages = *premap_pages;
    if (window) p.window = *window;
    // Checked on the first engine region before any changes: all of them take the same policy.
    if (i >= m.fault_of_region.size() || !m.engine) return fail("DMA policy change", EIO, ctx, "no fault engine");
    for (uint32_t e : m.fault_of_region[i]) PINLESS_TRY_VOID(m.engine->set_policy(e, p));
    r.fault_policy = p;
    return {};
  }
  return fail("DMA policy change", EINVAL, fmt::format("RAM offset {:#x}", ram_offset),
              "no DMA region starts there (vm.info lists them)");
}

nlohmann::ordered_json DmaDomain::summary() const {
  const Impl& m = *impl_;
  nlohmann::ordered_json j;
  j["backend"] = backend_name(m.backend.kind());
  j["pinned_bytes"] = m.accounting.total();
  j["pinned_peak_bytes"] = m.accounting.peak();
  j["pin_limit_bytes"] = m.policy.pin_limit;
  j["reclaim"] = m.policy.reclaim;
  j["fallback"] = m.fallback.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(m.fallback);
  FaultEngine::Stats st = m.engine ? m.engine->stats() : FaultEngine::Stats{};
  j["faults"] = {{"records", st.records},         {"groups", st.groups},
                 {"invalid_groups", st.invalid_groups}, {"maps", st.maps},
                 {"pages_mapped", st.pages_mapped}, {"map_failures", st.map_failures},
                 {"reclaims", st.reclaims},       {"pages_reclaimed", st.pages_reclaimed},
                 {"over_limit", st.over_limit},   {"reads", m.served.reads},
                 {"answers_refused", m.served.refused}};
  auto regions = nlohmann::ordered_json::array();
  for (size_t i = 0; i < m.policy.regions.size(); ++i) {
    const DmaRegion& r = m.policy.regions[i];
    nlohmann::ordered_json o{{"gpa", hex(r.gpa.value())}, {"size", r.iova.size},
                             {"ram_offset", r.offset}, {"dma", r.fault ? "fault" : "pin"}};
    uint64_t pinned = 0;
    if (r.fault) {
      o["premap"] = r.fault_policy.premap_pages;
      o["window"] = window_policy_name(r.fault_policy.window);
      if (i < m.fault_of_region.size()) {
        for (uint32_t e : m.fault_of_region[i]) pinned += m.accounting.region_bytes(e);
      }
    } else if (m.pin_of_region.size() > i && m.pin_of_region[i] >= 0) {
      pinned = m.pins[size_t(m.pin_of_region[i])].mapped_bytes();
    }
    o["pinned_bytes"] = pinned;
    regions.push_back(std::move(o));
  }
  j["regions"] = std::move(regions);
  // Per device: the faults it raised and what they made the domain map (cumulative).
  auto devices = nlohmann::ordered_json::array();
  for (const auto& d : m.devices) {
    PinAccounting::DeviceStats ds;
    if (auto it = m.accounting.devices().find(d.dev_id); it != m.accounting.devices().end()) ds = it->second;
    devices.push_back({{"name", d.name}, {"dev_id", d.dev_id}, {"faults", ds.faults},
                       {"bytes_mapped", ds.bytes_mapped}, {"invalid", ds.invalid}});
  }
  j["devices"] = std::move(devices);
  return j;
}

}  // namespace pinless::iommu
