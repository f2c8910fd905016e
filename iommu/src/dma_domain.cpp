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
  // fault-capable HWPT. On failure nothing is left: devices attached so far are moved back
  // onto the IOAS, HWPTs and the fault queue destroyed. `at_start`: the error names
  // --dma-fallback.
  std::optional<FaultSupportError> setup_fault(bool at_start);
  void undo_fault_setup(size_t attached);
  // Maps and pins region i (it is not a fault region, or no longer).
  Status pin_region(size_t i, const std::vector<Range<Iova>>& allowed, std::vector<DmaPhase>& phases);
  // A new FaultEngine (no regions yet) and the FaultQueue serving it.
  void start_engine();
  // Region i becomes faultable with policy p: new engine regions (its parts inside the IOMMU's
  // ranges), or the ones it had before a switch to pin, unpinned.
  Status add_fault_region(size_t i, const FaultPolicy& p, const std::vector<Range<Iova>>& allowed);
  void log_ready() const;
  // The run-time switches (DmaDomain::set_dma_mode).
  Status to_fault(size_t i, const FaultPolicy& p);
  Status to_pin(size_t i);

  Sys& sys;
  DmaBackend& backend;
  DmaPolicy policy;
  std::vector<DmaDevice> devices;
  FaultSupport* faults = nullptr;  // the backend's, once fault mode is set up
  std::string fallback;            // reason name when fallback_pin took effect
  std::vector<bool> asked_fault;   // per region: dma=fault in the policy given to create()
  uint64_t switches = 0;           // run-time policy switches done
  PinAccounting accounting;
  FaultQueue::Drained served;  // totals over all on_fault_readable() calls
  // Per region, the static pins' MAP/UNMAP calls and their time (the fault path's are in the
  // engine's RegionStats).
  std::vector<FaultEngine::RegionStats> static_io;
  // Members below are destroyed in the destructor's explicit order.
  std::vector<std::optional<PinnedRegion>> pins;       // per region: its static pin, if pinned
  std::vector<std::vector<uint32_t>> fault_of_region;  // engine regions of each region
  std::optional<IommufdFault> fault;
  std::vector<IommufdObject> hwpts;
  std::unique_ptr<FaultEngine> engine;
  std::unique_ptr<FaultQueue> queue;
};

std::optional<FaultSupportError> DmaDomain::Impl::setup_fault(bool at_start) {
  const std::string hint = at_start ? kFallbackHint : "";
  FaultSupport* fs = backend.fault_support();
  if (fs == nullptr) {
    return FaultSupportError{
        FaultUnsupported::kType1,
        Error("fault-driven DMA", EOPNOTSUPP, "VFIO type1 backend",
              "I/O page faults reach user space only through iommufd (/dev/iommu, kernel >= 6.13); "
              "use --iommu-backend=iommufd" + hint)};
  }
  for (const auto& d : devices) {
    if (!d.can_fault) {
      return FaultSupportError{
          FaultUnsupported::kNoPri,
          Error("fault-driven DMA", EOPNOTSUPP, d.name + ": " + d.why_not,
                "this device cannot send page requests, so a dma=fault region would never fault "
                "and its DMA would hit unmapped memory" + hint)};
    }
  }
  auto f = fs->alloc_fault_queue();
  if (!f) return classify_fault_queue_alloc(std::move(f.error()));
  fault.emplace(std::move(*f));
  for (size_t k = 0; k < devices.size(); ++k) {
    DmaDevice& d = devices[k];
    auto h = fs->alloc_fault_hwpt(d.dev_id, fault->id());
    if (!h) {
      undo_fault_setup(k);
      return classify_fault_hwpt_alloc(std::move(h.error()).within(d.name));
    }
    uint32_t hwpt_id = h->id();
    hwpts.push_back(std::move(*h));
    if (auto a = d.attach(hwpt_id); !a) {
      undo_fault_setup(k);
      return classify_fault_attach(std::move(a.error()), d.name);
    }
  }
  faults = fs;
  return std::nullopt;
}

void DmaDomain::Impl::undo_fault_setup(size_t attached) {
  FaultSupport* fs = backend.fault_support();
  for (size_t k = 0; k < attached && fs != nullptr; ++k) {
    if (auto st = devices[k].attach(fs->ioas_id()); !st) {
      logger("dma")->error("{}: cannot move it back onto IOAS {}: {}", devices[k].name, fs->ioas_id(),
                           st.error().message());
    }
  }
  hwpts.clear();
  fault.reset();
}

Status DmaDomain::Impl::pin_region(size_t i, const std::vector<Range<Iova>>& allowed, std::vector<DmaPhase>& phases) {
  const DmaRegion& r = policy.regions[i];
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
  logger("dma")->info("pinned {} at IOVA {:#x} in {:.1f} ms ({} in IOVA holes skipped)", format_size(pin.mapped_bytes()),
                      r.iova.start.value(), double(us) / 1000, format_size(pin.skipped_bytes()));
  static_io[i].map_calls += pin.map_calls();
  static_io[i].map_ns += pin.map_us() * 1000;
  pins[i].emplace(std::move(pin));
  return {};
}

void DmaDomain::Impl::start_engine() {
  engine = std::make_unique<FaultEngine>(accounting);
  engine->set_reclaim(policy.reclaim);
  queue = std::make_unique<FaultQueue>(sys, fault->fd.get(), *engine, backend);
}

Status DmaDomain::Impl::add_fault_region(size_t i, const FaultPolicy& p, const std::vector<Range<Iova>>& allowed) {
  const DmaRegion& r = policy.regions[i];
  if (!fault_of_region[i].empty()) {  // faultable before: same parts, new policy
    for (uint32_t e : fault_of_region[i]) PINLESS_TRY_VOID(engine->set_policy(e, p));
    for (uint32_t e : fault_of_region[i]) engine->set_pinned(e, false);
    return {};
  }
  // Only what the IOMMU can address: a fault elsewhere is answered INVALID.
  for (const auto& part : clip_to_ranges(r.iova, allowed)) {
    uint64_t delta = part.start.value() - r.iova.start.value();
    FaultRegionSpec spec;
    spec.name = piece_name(r, delta);
    spec.gpa = {Gpa(part.start.value()), part.size};  // the engine maps and matches faults here
    spec.hva = r.hva + delta;
    spec.fault_policy = p;
    fault_of_region[i].push_back(PINLESS_TRY(engine->add_region(spec)));
    logger("dma")->info("fault region {} at IOVA {:#x}: premap {} pages, window {}", format_size(part.size),
                        part.start.value(), p.premap_pages, window_policy_name(p.window));
  }
  return {};
}

void DmaDomain::Impl::log_ready() const {
  // Tests and managers wait for this line: the IOAS, and the fault objects once they exist.
  if (backend.fault_support() == nullptr) return;
  logger("dma")->info("dma-ready: ioas={} hwpt={} fault={}", backend.fault_support()->ioas_id(),
                      hwpts.empty() ? 0 : hwpts.front().id(), fault ? fault->id() : 0);
}

DmaDomain::DmaDomain(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<DmaDomain>> DmaDomain::create(Sys& sys, DmaBackend& backend, std::vector<DmaDevice> devices,
                                                     DmaPolicy policy, std::vector<DmaPhase>* phases) {
  std::vector<DmaPhase> unused;
  std::vector<DmaPhase>& steps = phases != nullptr ? *phases : unused;
  auto impl = std::make_unique<Impl>(sys, backend, std::move(policy));
  impl->devices = std::move(devices);
  impl->accounting.set_limit(impl->policy.pin_limit);
  const size_t n = impl->policy.regions.size();
  for (const auto& r : impl->policy.regions) impl->asked_fault.push_back(r.fault);
  impl->static_io.resize(n);
  impl->pins.resize(n);
  impl->fault_of_region.resize(n);
  // Owned from here: any early return tears down what exists, in order.
  std::unique_ptr<DmaDomain> self(new DmaDomain(std::move(impl)));
  Impl& m = *self->impl_;

  bool want_fault = false;
  for (const auto& r : m.policy.regions) want_fault = want_fault || r.fault;
  if (want_fault) {
    PhaseRecord phase(steps, "dma_fault_setup");
    if (auto why = m.setup_fault(true)) {
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
  for (size_t i = 0; i < n; ++i) {
    if (!m.policy.regions[i].fault) PINLESS_TRY_VOID(m.pin_region(i, allowed, steps));
  }
  if (want_fault) {
    m.start_engine();
    for (size_t i = 0; i < n; ++i) {
      const DmaRegion& r = m.policy.regions[i];
      if (r.fault) PINLESS_TRY_VOID(m.add_fault_region(i, r.fault_policy, allowed));
    }
  }
  m.log_ready();
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

namespace {
// The region of `policy` starting at RAM offset `ram_offset`, or an EINVAL naming the offset.
Result<size_t> region_at(const DmaPolicy& policy, uint64_t ram_offset) {
  for (size_t i = 0; i < policy.regions.size(); ++i) {
    if (policy.regions[i].offset == ram_offset) return i;
  }
  return fail("DMA policy change", EINVAL, fmt::format("RAM offset {:#x}", ram_offset),
              "no DMA region starts there (vm.info lists them)");
}

Result<FaultPolicy> changed_policy(FaultPolicy p, std::optional<uint64_t> premap_pages,
                                   std::optional<WindowPolicy> window, const std::string& ctx) {
  if (premap_pages) p.premap_pages = *premap_pages;
  if (window) p.window = *window;
  if (p.premap_pages == 0 || p.premap_pages > kMaxPremapPages) {
    return fail("DMA policy change", EINVAL, ctx, fmt::format("premap must be 1..{} pages", kMaxPremapPages));
  }
  return p;
}

uint64_t elapsed_ns(Clock::time_point t0) {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
}
}  // namespace

Status DmaDomain::set_fault_policy(uint64_t ram_offset, std::optional<uint64_t> premap_pages,
                                   std::optional<WindowPolicy> window) {
  Impl& m = *impl_;
  size_t i = PINLESS_TRY(region_at(m.policy, ram_offset));
  DmaRegion& r = m.policy.regions[i];
  const std::string ctx = fmt::format("region {}+{:#x}", r.name, r.offset);
  if (!r.fault) {
    return fail("DMA policy change", EINVAL, ctx,
                m.asked_fault[i] && !m.fallback.empty()
                    ? "fault-driven DMA fell back to pinning at start (" + m.fallback + "); the region is pinned"
                    : "the region is pinned (dma=pin); premap and window apply to fault regions: switch it with "
                      "dma=fault");
  }
  FaultPolicy p = PINLESS_TRY(changed_policy(r.fault_policy, premap_pages, window, ctx));
  if (!m.engine) return fail("DMA policy change", EIO, ctx, "no fault engine");
  for (uint32_t e : m.fault_of_region[i]) PINLESS_TRY_VOID(m.engine->set_policy(e, p));
  r.fault_policy = p;
  return {};
}

Status DmaDomain::set_dma_mode(uint64_t ram_offset, bool fault, std::optional<uint64_t> premap_pages,
                               std::optional<WindowPolicy> window) {
  Impl& m = *impl_;
  size_t i = PINLESS_TRY(region_at(m.policy, ram_offset));
  DmaRegion& r = m.policy.regions[i];
  const std::string ctx = fmt::format("region {}+{:#x}", r.name, r.offset);
  if (!fault) {
    if (premap_pages || window) return fail("DMA policy change", EINVAL, ctx, "premap and window apply to dma=fault only");
    return r.fault ? m.to_pin(i) : Status{};
  }
  if (r.fault) return set_fault_policy(ram_offset, premap_pages, window);
  return m.to_fault(i, PINLESS_TRY(changed_policy(r.fault_policy, premap_pages, window, ctx)));
}

// Faults there are served before the pins go: the engine takes the region first (faults are
// served on this thread, so none is read in between), then the static mapping is unmapped.
Status DmaDomain::Impl::to_fault(size_t i, const FaultPolicy& p) {
  DmaRegion& r = policy.regions[i];
  const std::string ctx = fmt::format("region {}+{:#x}", r.name, r.offset);
  auto log = logger("dma");
  if (!engine) {
    if (auto why = setup_fault(false)) {
      return std::unexpected(std::move(why->error).within("switching " + ctx + " to dma=fault"));
    }
    start_engine();
    log->info("fault-driven DMA set up at run time: {} device(s) on fault HWPTs", devices.size());
  }
  std::vector<Range<Iova>> allowed = PINLESS_TRY(backend.iova_ranges());
  PINLESS_TRY_VOID(add_fault_region(i, p, allowed));
  r.fault = true;
  r.fault_policy = p;
  if (pins[i]) {
    uint64_t bytes = pins[i]->mapped_bytes(), calls = pins[i]->map_calls();
    auto t0 = Clock::now();
    pins[i].reset();
    static_io[i].unmap_calls += calls;
    static_io[i].unmap_ns += elapsed_ns(t0);
    log->info("{}: dma=fault now (premap {} pages, window {}); {} unpinned", ctx, p.premap_pages,
              window_policy_name(p.window), format_size(bytes));
  }
  switches++;
  log_ready();
  return {};
}

// The fault windows are unmapped, then the whole region mapped and pinned; the engine answers
// faults there SUCCESS from then on. Checked against the pin limit before anything changes.
Status DmaDomain::Impl::to_pin(size_t i) {
  DmaRegion& r = policy.regions[i];
  const std::string ctx = fmt::format("region {}+{:#x}", r.name, r.offset);
  std::vector<Range<Iova>> allowed = PINLESS_TRY(backend.iova_ranges());
  uint64_t need = 0, have = 0;
  for (const auto& part : clip_to_ranges(r.iova, allowed)) need += part.size;
  for (uint32_t e : fault_of_region[i]) have += accounting.region_bytes(e);
  if (need > have && !accounting.fits(need - have)) {
    return fail("DMA policy change", ENOSPC, ctx,
                fmt::format("pinning it whole needs {} more, over the pin limit {} ({} pinned); raise --pin-limit or "
                            "keep the region fault-driven",
                            format_size(need - have), format_size(accounting.limit()), format_size(accounting.total())));
  }
  for (uint32_t e : fault_of_region[i]) queue->unmap_region(e);
  std::vector<DmaPhase> unused;
  if (auto st = pin_region(i, allowed, unused); !st) {
    // Still a fault region, with nothing mapped: faults map its windows again.
    return std::unexpected(std::move(st.error()).within("switching " + ctx + " to dma=pin (it stays dma=fault)"));
  }
  for (uint32_t e : fault_of_region[i]) engine->set_pinned(e, true);
  r.fault = false;
  switches++;
  logger("dma")->info("{}: dma=pin now; {} pinned", ctx, format_size(pins[i]->mapped_bytes()));
  return {};
}

nlohmann::ordered_json DmaDomain::summary() const {
  const Impl& m = *impl_;
  auto us = [](uint64_t ns) { return ns / 1000; };
  nlohmann::ordered_json j;
  j["backend"] = backend_name(m.backend.kind());
  j["pinned_bytes"] = m.accounting.total();
  j["pinned_peak_bytes"] = m.accounting.peak();
  j["pin_limit_bytes"] = m.policy.pin_limit;
  j["reclaim"] = m.policy.reclaim;
  j["fallback"] = m.fallback.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(m.fallback);
  j["policy_switches"] = m.switches;
  FaultEngine::Stats st = m.engine ? m.engine->stats() : FaultEngine::Stats{};
  // The fault path's MAP/UNMAP calls over all regions, with their time.
  FaultEngine::RegionStats io;
  for (size_t e = 0; m.engine && e < m.engine->region_count(); ++e) io += m.engine->region_stats(uint32_t(e));
  j["faults"] = {{"records", st.records},         {"groups", st.groups},
                 {"invalid_groups", st.invalid_groups}, {"maps", st.maps},
                 {"pages_mapped", st.pages_mapped}, {"map_failures", st.map_failures},
                 {"reclaims", st.reclaims},       {"pages_reclaimed", st.pages_reclaimed},
                 {"over_limit", st.over_limit},   {"reads", m.served.reads},
                 {"answers_refused", m.served.refused}, {"map_calls", io.map_calls},
                 {"map_us", us(io.map_ns)},       {"unmap_calls", io.unmap_calls},
                 {"unmap_us", us(io.unmap_ns)}};
  auto regions = nlohmann::ordered_json::array();
  for (size_t i = 0; i < m.policy.regions.size(); ++i) {
    const DmaRegion& r = m.policy.regions[i];
    nlohmann::ordered_json o{{"gpa", hex(r.gpa.value())}, {"size", r.iova.size},
                             {"ram_offset", r.offset}, {"dma", r.fault ? "fault" : "pin"}};
    if (r.fault) {
      o["premap"] = r.fault_policy.premap_pages;
      o["window"] = window_policy_name(r.fault_policy.window);
    }
    // Cumulative over the region's life (static pins and fault windows, across switches).
    FaultEngine::RegionStats c = i < m.static_io.size() ? m.static_io[i] : FaultEngine::RegionStats{};
    uint64_t pinned = 0, mappings = 0;
    if (m.pins[i]) {
      pinned = m.pins[i]->mapped_bytes();
      mappings = m.pins[i]->map_calls();
    }
    for (uint32_t e : m.fault_of_region[i]) {
      if (r.fault) pinned += m.accounting.region_bytes(e), mappings += m.engine->windows_in(e);
      c += m.engine->region_stats(e);
    }
    o["pinned_bytes"] = pinned;
    o["mappings"] = mappings;
    o["faults"] = c.records;
    o["invalid"] = c.invalid;
    o["pages_mapped_by_faults"] = c.pages_mapped;
    o["reclaims"] = c.reclaims;
    o["map_calls"] = c.map_calls;
    o["map_us"] = us(c.map_ns);
    o["unmap_calls"] = c.unmap_calls;
    o["unmap_us"] = us(c.unmap_ns);
    regions.push_back(std::move(o));
  }
  j["regions"] = std::move(regions);
  // Per device: the faults it raised and what they made the domain map (cumulative).
  auto devices = nlohmann::ordered_json::array();
  for (const auto& d : m.devices) {
    PinAccounting::DeviceStats ds;
    if (auto it = m.accounting.devices().find(d.dev_id); it != m.accounting.devices().end()) ds = it->second;
    devices.push_back({{"name", d.name}, {"dev_id", d.dev_id}, {"faults", ds.faults}, {"groups", ds.groups},
                       {"bytes_mapped", ds.bytes_mapped}, {"invalid", ds.invalid}});
  }
  j["devices"] = std::move(devices);
  return j;
}

}  // namespace pinless::iommu
