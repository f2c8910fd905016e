#include "guest_dma.h"

#include <chrono>
#include <fmt/format.h>
#include <fstream>

#include "pinless/base/log.h"
#include "pinless/base/size.h"
#include "pinless/iommu/dma_errors.h"
#include "pinless/iommu/fault_engine.h"
#include "pinless/iommu/fault_queue.h"
#include "pinless/iommu/iommufd.h"
#include "pinless/iommu/pin_accounting.h"
#include "pinless/iommu/pinned_region.h"

namespace pinless::vmm {
namespace {

constexpr const char* kFallbackHint =
    "; --dma-fallback=pin maps and pins the region instead, --dma-fallback=fail stops";

// "VmPin:    123 kB" -> 123 (kB); 0 when absent.
uint64_t proc_status_kb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(key) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return std::strtoull(line.c_str() + prefix.size(), nullptr, 10);
  }
  return 0;
}

std::string hex(uint64_t v) { return fmt::format("{:#x}", v); }

}  // namespace

struct GuestDma::Impl {
  Impl(Sys& s, iommu::DmaBackend& b, iommu::IommufdBackend* i, const DmaConfig& c)
      : sys(s), backend(b), ioas(i), cfg(c) {}

  // Returns the reason fault mode is impossible, or nothing when every device now sits on a
  // fault-capable HWPT.
  std::optional<iommu::FaultSupportError> setup_fault();

  Sys& sys;
  iommu::DmaBackend& backend;
  iommu::IommufdBackend* ioas;
  DmaConfig cfg;
  std::vector<DmaDeviceRef> devices;
  std::vector<DmaPiece> pieces;
  std::string fallback;  // reason name when --dma-fallback=pin took effect
  iommu::PinAccounting accounting;
  // Members below are destroyed in the destructor's explicit order.
  std::vector<iommu::PinnedRegion> pins;
  std::vector<int> pin_of_piece;                   // index into pins, or -1
  std::vector<std::vector<uint32_t>> fault_of_piece;  // engine regions of each piece
  std::optional<iommu::IommufdFault> fault;
  std::vector<iommu::IommufdObject> hwpts;
  std::unique_ptr<iommu::FaultEngine> engine;
  std::unique_ptr<iommu::FaultQueue> queue;
  iommu::FaultQueue::Drained served;  // totals over all on_fault_readable() calls
};

std::optional<iommu::FaultSupportError> GuestDma::Impl::setup_fault() {
  using iommu::FaultUnsupported;
  if (ioas == nullptr) {
    return iommu::FaultSupportError{
        FaultUnsupported::kType1,
        Error("fault-driven DMA", EOPNOTSUPP, "VFIO type1 backend",
              std::string("I/O page faults reach user space only through iommufd (/dev/iommu, kernel >= 6.13); "
                          "use --iommu-backend=iommufd") + kFallbackHint)};
  }
  for (const auto& d : devices) {
    if (!d.can_fault) {
      return iommu::FaultSupportError{
          FaultUnsupported::kNoPri,
          Error("fault-driven DMA", EOPNOTSUPP, d.name + ": " + d.why_not,
                std::string("this device cannot send page requests, so a dma=fault region would never fault "
                            "and its DMA would hit unmapped memory") + kFallbackHint)};
    }
  }
  auto f = ioas->ctx().fault_queue_alloc();
  if (!f) return iommu::classify_fault_queue_alloc(std::move(f.error()));
  fault.emplace(std::move(*f));
  for (auto& d : devices) {
    auto h = ioas->ctx().hwpt_alloc(d.dev_id, ioas->ioas_id(), 0, fault->id());
    if (!h) return iommu::classify_fault_hwpt_alloc(std::move(h.error()).within(d.name));
    uint32_t hwpt_id = h->id();
    hwpts.push_back(std::move(*h));
    if (auto a = d.attach(hwpt_id); !a) return iommu::classify_fault_attach(std::move(a.error()), d.name);
  }
  return std::nullopt;
}

GuestDma::GuestDma(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<GuestDma>> GuestDma::create(Sys& sys, iommu::DmaBackend& backend, iommu::IommufdBackend* ioas,
                                                   std::vector<DmaDeviceRef> devices, std::vector<DmaPiece> pieces,
                                                   const DmaConfig& cfg, Timeline& timeline) {
  auto log = logger("dma");
  auto impl = std::make_unique<Impl>(sys, backend, ioas, cfg);
  impl->devices = std::move(devices);
  impl->pieces = std::move(pieces);
  impl->accounting.set_limit(cfg.pin_limit);
  // Owned from here: any early return tears down what exists, in order.
  std::unique_ptr<GuestDma> self(new GuestDma(std::move(impl)));
  Impl& m = *self->impl_;

  bool want_fault = false;
  for (const auto& p : m.pieces) want_fault = want_fault || p.fault;
  if (want_fault) {
    auto phase = timeline.phase("dma_fault_setup");
    if (auto why = m.setup_fault()) {
      phase.attr("result", iommu::fault_unsupported_name(why->reason));
      if (!cfg.fallback_pin) return std::unexpected(std::move(why->error));
      log->warn("fault-driven DMA is not available ({}); pinning the dma=fault regions instead "
                "(--dma-fallback=pin)", why->error.message());
      m.fallback = iommu::fault_unsupported_name(why->reason);
      for (auto& p : m.pieces) p.fault = false;
      want_fault = false;
    } else {
      phase.attr("result", "ok");
    }
  }

  // Static pins first (the device may DMA there from its first instruction), then the fault
  // regions, which map nothing now.
  std::vector<Range<Iova>> allowed = PINLESS_TRY(backend.iova_ranges());
  m.pin_of_piece.assign(m.pieces.size(), -1);
  m.fault_of_piece.resize(m.pieces.size());
  for (size_t i = 0; i < m.pieces.size(); ++i) {
    const DmaPiece& p = m.pieces[i];
    if (p.fault) continue;
    auto phase = timeline.phase("pin_region", {{"gpa", hex(p.gpa.start.value())}});
    auto t0 = std::chrono::steady_clock::now();
    iommu::PinnedRegionSpec spec;
    spec.name = fmt::format("ram+{}", format_size(p.ram_offset));
    spec.gpa = p.gpa;
    spec.hva = p.hva;
    iommu::PinnedRegion pin = PINLESS_TRY(iommu::PinnedRegion::create(backend, spec, allowed, &m.accounting));
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
    phase.attr("bytes", std::to_string(pin.mapped_bytes()));
    phase.attr("ms", fmt::format("{:.1f}", double(us) / 1000));
    phase.attr("populate_ms", fmt::format("{:.1f}", double(pin.populate_us()) / 1000));
    phase.attr("map_ms", fmt::format("{:.1f}", double(pin.map_us()) / 1000));
    phase.attr("populate_threads", std::to_string(pin.populate_threads()));
    log->info("pinned {} at IOVA {:#x} in {:.1f} ms ({} in IOVA holes skipped)", format_size(pin.mapped_bytes()),
              p.gpa.start.value(), double(us) / 1000, format_size(pin.skipped_bytes()));
    m.pin_of_piece[i] = int(m.pins.size());
    m.pins.push_back(std::move(pin));
  }
  if (!want_fault) return self;

  m.engine = std::make_unique<iommu::FaultEngine>(m.accounting);
  m.engine->set_reclaim(cfg.reclaim);
  for (size_t i = 0; i < m.pieces.size(); ++i) {
    const DmaPiece& p = m.pieces[i];
    if (!p.fault) continue;
    // Only what the IOMMU can address: a fault elsewhere is answered INVALID.
    for (const auto& part : iommu::clip_to_ranges({Iova(p.gpa.start.value()), p.gpa.size}, allowed)) {
      uint64_t delta = part.start.value() - p.gpa.start.value();
      iommu::FaultRegionSpec spec;
      spec.name = fmt::format("ram+{}", format_size(p.ram_offset + delta));
      spec.gpa = {Gpa(part.start.value()), part.size};
      spec.hva = p.hva + delta;
      spec.fault_policy = p.fault_policy;
      m.fault_of_piece[i].push_back(PINLESS_TRY(m.engine->add_region(spec)));
      log->info("fault region {} at IOVA {:#x}: premap {} pages, window {}", format_size(part.size),
                part.start.value(), p.fault_policy.premap_pages, iommu::window_policy_name(p.fault_policy.window));
    }
  }
  m.queue = std::make_unique<iommu::FaultQueue>(sys, m.fault->fd.get(), *m.engine, backend);
  log->info("dma-ready: ioas={} hwpt={} fault={}", ioas->ioas_id(), m.hwpts.front().id(), m.fault->id());
  return self;
}

void GuestDma::release_devices() {
  for (auto& d : impl_->devices) {
    if (d.detach) std::exchange(d.detach, nullptr)();
  }
}

GuestDma::~GuestDma() {
  Impl& m = *impl_;
  if (m.queue) m.queue->unmap_all();
  release_devices();
  m.queue.reset();
  m.engine.reset();
  m.hwpts.clear();
  m.fault.reset();
  m.pins.clear();
  logger("dma")->info("dma: released all mappings: pinned {} B, VmPin {} kB, VmLck {} kB",
                      m.backend.mapped_bytes(), proc_status_kb("VmPin"), proc_status_kb("VmLck"));
}

int GuestDma::fault_fd() const { return impl_->queue ? impl_->fault->fd.get() : -1; }

Status GuestDma::on_fault_readable() {
  Impl& m = *impl_;
  if (!m.queue) return {};
  auto d = PINLESS_TRY(m.queue->on_readable());
  auto& s = m.served;
  s.reads += d.reads, s.records += d.records, s.groups += d.groups, s.invalid += d.invalid;
  s.maps += d.maps, s.unmaps += d.unmaps, s.refused += d.refused;
  return {};
}

uint64_t GuestDma::pinned_bytes() const { return impl_->accounting.total(); }

nlohmann::ordered_json GuestDma::summary() const {
  const Impl& m = *impl_;
  nlohmann::ordered_json j;
  j["backend"] = iommu::backend_name(m.backend.kind());
  j["pinned_bytes"] = m.accounting.total();
  j["pinned_peak_bytes"] = m.accounting.peak();
  j["pin_limit_bytes"] = m.cfg.pin_limit;
  j["reclaim"] = m.cfg.reclaim;
  j["fallback"] = m.fallback.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(m.fallback);
  iommu::FaultEngine::Stats st = m.engine ? m.engine->stats() : iommu::FaultEngine::Stats{};
  j["faults"] = {{"records", st.records},         {"groups", st.groups},
                 {"invalid_groups", st.invalid_groups}, {"maps", st.maps},
                 {"pages_mapped", st.pages_mapped}, {"map_failures", st.map_failures},
                 {"reclaims", st.reclaims},       {"pages_reclaimed", st.pages_reclaimed},
                 {"over_limit", st.over_limit},   {"reads", m.served.reads},
                 {"answers_refused", m.served.refused}};
  auto regions = nlohmann::ordered_json::array();
  for (size_t i = 0; i < m.pieces.size(); ++i) {
    const DmaPiece& p = m.pieces[i];
    nlohmann::ordered_json r{{"gpa", hex(p.gpa.start.value())}, {"size", p.gpa.size},
                             {"ram_offset", p.ram_offset}, {"dma", p.fault ? "fault" : "pin"}};
    uint64_t pinned = 0;
    if (p.fault) {
      r["premap"] = p.fault_policy.premap_pages;
      r["window"] = iommu::window_policy_name(p.fault_policy.window);
      for (uint32_t e : m.fault_of_piece[i]) pinned += m.accounting.region_bytes(e);
    } else if (m.pin_of_piece.size() > i && m.pin_of_piece[i] >= 0) {
      pinned = m.pins[size_t(m.pin_of_piece[i])].mapped_bytes();
    }
    r["pinned_bytes"] = pinned;
    regions.push_back(std::move(r));
  }
  j["regions"] = std::move(regions);
  // Per device: the faults it raised and what they made pinless map (cumulative).
  auto devices = nlohmann::ordered_json::array();
  for (const auto& d : m.devices) {
    iommu::PinAccounting::DeviceStats ds;
    if (auto it = m.accounting.devices().find(d.dev_id); it != m.accounting.devices().end()) ds = it->second;
    devices.push_back({{"name", d.name}, {"dev_id", d.dev_id}, {"faults", ds.faults},
                       {"bytes_mapped", ds.bytes_mapped}, {"invalid", ds.invalid}});
  }
  j["devices"] = std::move(devices);
  return j;
}

}  // namespace pinless::vmm
