#include "pinless/iommu/fault_engine.h"

#include <algorithm>
#include <cerrno>
#include <fmt/format.h>

namespace pinless::iommu {

void FaultPlan::clear() {
  unmaps.clear();
  maps.clear();
  responses.clear();
  pages.clear();
  group_pages_end.clear();
}

Result<uint32_t> FaultEngine::add_region(const FaultRegionSpec& spec) {
  uint64_t ps = spec.page_size;
  std::string ctx = fmt::format("fault region {} gpa 0x{:x}+0x{:x}", spec.name, spec.gpa.start.value(), spec.gpa.size);
  if (ps == 0 || (ps & (ps - 1)) != 0) return fail("add fault region", EINVAL, ctx, "page size must be a power of two");
  if (spec.gpa.size == 0 || !spec.gpa.start.aligned(ps) || spec.gpa.size % ps != 0 || !spec.hva.aligned(ps)) {
    return fail("add fault region", EINVAL, ctx, "region start, size and host address must be page aligned");
  }
  if (spec.fault_policy.premap_pages == 0) return fail("add fault region", EINVAL, ctx, "premap must be at least 1 page");
  for (const auto& r : regions_) {
    if (r.spec.gpa.overlaps(spec.gpa)) return fail("add fault region", EEXIST, ctx, "overlaps region " + r.spec.name);
  }
  Region rg;
  rg.spec = spec;
  rg.window = {spec.fault_policy, ps};
  rg.pages = spec.gpa.size / ps;
  rg.bitmap = PageBitmap(rg.pages);
  windows_.add_region(rg.pages);
  regions_.push_back(std::move(rg));
  return static_cast<uint32_t>(regions_.size() - 1);
}

Status FaultEngine::set_policy(uint32_t i, const FaultPolicy& p) {
  if (i >= regions_.size()) return fail("fault policy", EINVAL, "region " + std::to_string(i), "no such fault region");
  const std::string ctx = "fault region " + regions_[i].spec.name;
  if (p.premap_pages == 0 || p.premap_pages > kMaxPremapPages) {
    return fail("fault policy", EINVAL, ctx, fmt::format("premap must be 1..{} pages", kMaxPremapPages));
  }
  if (p.max_hint_pages == 0) return fail("fault policy", EINVAL, ctx, "the hint cap must be at least 1 page");
  regions_[i].spec.fault_policy = p;
  regions_[i].window.fault_policy = p;
  return {};
}

void FaultEngine::set_pinned(uint32_t i, bool pinned) {
  Region& rg = regions_[i];
  if (rg.pinned == pinned) return;
  // A full bitmap: every fault in the region is "mapped already", answered without a MAP.
  if (pinned) {
    rg.bitmap.set(0, rg.pages);
  } else {
    rg.bitmap.clear(0, rg.pages);
  }
  rg.pinned = pinned;
}

uint64_t FaultEngine::windows_in(uint32_t i) const {
  uint64_t n = 0;
  windows_.for_each([&](const WindowTable::Window& w) { n += (w.region == i); });
  return n;
}

int FaultEngine::find_region(Iova addr) const {
  Gpa gpa(addr.value());  // IOVA = GPA for fault regions
  for (size_t i = 0; i < regions_.size(); ++i) {
    if (regions_[i].spec.gpa.contains(gpa)) return static_cast<int>(i);
  }
  return -1;
}

DmaRun FaultEngine::run_of(uint32_t region, uint64_t first, uint64_t count) const {
  const auto& s = regions_[region].spec;
  uint64_t off = first * s.page_size;
  return {region, first, count, Iova(s.gpa.start.value() + off), s.hva + off, count * s.page_size, s.perm};
}

bool FaultEngine::make_room(uint64_t bytes, uint32_t region, PageSpan span, FaultPlan& out) {
  if (!reclaim_) return accounting_.fits(bytes);
  for (uint32_t next = windows_.coldest(); !accounting_.fits(bytes);) {
    const uint32_t id = next;
    if (id == WindowTable::kNil) return false;
    const auto w = windows_[id];
    // Never evict what this batch faulted in: its groups are about to be answered SUCCESS.
    // The list is in fault order, so every window after this one is as recent.
    if (w.batch == batch_) return false;
    next = w.next;
    // Nor a window inside the span being planned: its pages would be mapped again at once,
    // beyond the room made for the span's unmapped pages (and the pin limit with them).
    if (w.region == region && w.first < span.end() && span.first < w.first + w.pages) continue;
    Region& rg = regions_[w.region];
    out.unmaps.push_back(run_of(w.region, w.first, w.pages));
    rg.bitmap.clear(w.first, w.pages);
    accounting_.release(w.region, w.pages * rg.spec.page_size);
    stats_.reclaims++;
    stats_.pages_reclaimed += w.pages;
    rg.stats.reclaims++;
    rg.stats.pages_reclaimed += w.pages;
    windows_.erase(id);
  }
  return true;
}

void FaultEngine::add_map(uint32_t region, uint64_t first, uint64_t count, FaultPlan& out) {
  Region& rg = regions_[region];
  rg.bitmap.set(first, count);
  accounting_.charge(region, count * rg.spec.page_size);
  stats_.pages_mapped += count;
  rg.stats.pages_mapped += count;
  out.maps.push_back(run_of(region, first, count));
  windows_.insert(region, first, count, batch_);
}

bool FaultEngine::plan_record(const FaultRecord& r, FaultPlan& out, uint32_t& region_out, uint64_t& page_out) {
  stats_.records++;
  int ri = find_region(r.addr);
  if (ri < 0) {
    if (warn_limit_.allow()) {
      logger("iommu")->warn("device {} faulted at iova 0x{:x} outside guest RAM: INVALID", r.dev_id, r.addr.value());
    }
    return false;
  }
  Region& rg = regions_[ri];
  rg.stats.records++;
  // The host IOMMU has no execute or privilege bit in an IOAS mapping: exec needs read.
  uint8_t need = 0;
  if (r.perm & (FaultRecord::kPermRead | FaultRecord::kPermExec)) need |= static_cast<uint8_t>(Perm::kRead);
  if (r.perm & FaultRecord::kPermWrite) need |= static_cast<uint8_t>(Perm::kWrite);
  if (need != 0 && !allows(rg.spec.perm, static_cast<Perm>(need))) {
    if (warn_limit_.allow()) {
      logger("iommu")->warn("device {} asked for perm 0x{:x} at iova 0x{:x}, region {} allows {}: INVALID", r.dev_id,
                            r.perm, r.addr.value(), rg.spec.name, perm_name(rg.spec.perm));
    }
    rg.stats.invalid++;
    return false;
  }
  uint64_t ps = rg.spec.page_size;
  uint64_t off = r.addr.value() - rg.spec.gpa.start.value();
  uint64_t page = off / ps;
  region_out = static_cast<uint32_t>(ri);
  page_out = page;
  if (rg.bitmap.test(page)) {
    // Mapped already (earlier in this batch, or the device retried): just answer.
    stats_.already_mapped++;
    if (uint32_t id = windows_.containing(region_out, page); id != WindowTable::kNil) windows_.touch(id, batch_);
    return true;
  }
  PageSpan w = compute_window(rg.window, rg.spec.gpa.start.value(), rg.pages, page, off % ps, r.length);
  uint64_t need_pages = 0;
  rg.bitmap.for_each_clear_run(w.first, w.count, [&](uint64_t, uint64_t n) { need_pages += n; });
  if (!make_room(need_pages * ps, region_out, w, out)) {
    // Degrade to what still fits, from the faulting page on, before refusing.
    uint64_t fit = accounting_.headroom() / ps;
    w = {page, std::min(fit, w.end() - page)};
    if (fit == 0) {
      stats_.over_limit++;
      if (warn_limit_.allow()) {
        logger("iommu")->warn("pin limit {} reached ({} pinned, nothing cold to reclaim): fault at iova 0x{:x} INVALID",
                              accounting_.limit(), accounting_.total(), r.addr.value());
      }
      rg.stats.invalid++;
      return false;
    }
  }
  rg.bitmap.for_each_clear_run(w.first, w.count, [&](uint64_t first, uint64_t n) { add_map(region_out, first, n, out); });
  return true;
}

void FaultEngine::plan(std::span<const FaultRecord> records, FaultPlan& out) {
  out.clear();
  ++batch_;
  size_t n = records.size();
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j + 1 < n && !records[j].last() && records[j + 1].cookie == records[i].cookie) ++j;
    bool ok = true;
    uint64_t mapped_before = stats_.pages_mapped;
    for (size_t k = i; k <= j; ++k) {
      uint32_t rg = 0;
      uint64_t pg = 0;
      if (plan_record(records[k], out, rg, pg)) {
        out.pages.push_back({rg, pg});
      } else {
        ok = false;
      }
    }
    out.group_pages_end.push_back(static_cast<uint32_t>(out.pages.size()));
    out.responses.push_back({records[i].cookie, ok ? FaultCode::kSuccess : FaultCode::kInvalid});
    stats_.groups++;
    // Attribution in pages of the first region's size is approximate across page sizes; bytes
    // are exact when a device faults in one region, which is the common case.
    uint64_t ps = out.pages.empty() ? kPageSize : regions_[out.pages.back().region].spec.page_size;
    accounting_.attribute(records[i].dev_id, j - i + 1, (stats_.pages_mapped - mapped_before) * ps, ok ? 0 : 1);
    i = j + 1;
  }
  coalesce(out);
  stats_.maps += out.maps.size();  // MAP calls, after coalescing
}

void FaultEngine::coalesce(FaultPlan& out) {
  if (out.maps.size() < 2) return;
  std::sort(out.maps.begin(), out.maps.end(), [](const DmaRun& a, const DmaRun& b) {
    return a.region != b.region ? a.region < b.region : a.first_page < b.first_page;
  });
  size_t w = 0;
  for (size_t r = 1; r < out.maps.size(); ++r) {
    DmaRun& prev = out.maps[w];
    const DmaRun& cur = out.maps[r];
    if (cur.region == prev.region && prev.first_page + prev.pages == cur.first_page) {
      // One MAP for both; they also become one window (one UNMAP on reclaim).
      windows_.erase(windows_.find(cur.region, cur.first_page));
      windows_.grow(windows_.find(prev.region, prev.first_page), cur.pages);
      prev.pages += cur.pages;
      prev.size += cur.size;
    } else {
      out.maps[++w] = cur;
    }
  }
  out.maps.resize(w + 1);
}

void FaultEngine::map_failed(const DmaRun& run) {
  stats_.map_failures++;
  drop_map(run);
}

void FaultEngine::drop_map(const DmaRun& run) {
  Region& rg = regions_[run.region];
  rg.bitmap.clear(run.first_page, run.pages);
  accounting_.release(run.region, run.size);
  if (uint32_t id = windows_.find(run.region, run.first_page); id != WindowTable::kNil) windows_.erase(id);
}

void FaultEngine::unmap_failed(const DmaRun& run, FaultPlan& plan) {
  Region& rg = regions_[run.region];
  const uint64_t ps = rg.spec.page_size;
  const uint64_t end = run.first_page + run.pages;
  logger("iommu")->error("reclaim unmap of iova 0x{:x}+0x{:x} failed; keeping it mapped", run.iova.value(), run.size);
  // The window stays mapped, so a MAP this batch planned over its pages (a later fault whose
  // window reached into it) would fail with EEXIST: trim those maps to the pages outside it.
  for (size_t k = 0; k < plan.maps.size();) {
    const DmaRun m = plan.maps[k];
    if (m.region != run.region || m.first_page >= end || run.first_page >= m.first_page + m.pages) {
      ++k;
      continue;
    }
    windows_.erase(windows_.find(m.region, m.first_page));
    const uint64_t lo = std::max(m.first_page, run.first_page), hi = std::min(m.first_page + m.pages, end);
    accounting_.release(m.region, (hi - lo) * ps);  // charged again below, as the window's
    plan.maps.erase(plan.maps.begin() + static_cast<ptrdiff_t>(k));
    for (auto [first, last] : {std::pair{m.first_page, lo}, std::pair{hi, m.first_page + m.pages}}) {
      if (first == last) continue;
      plan.maps.insert(plan.maps.begin() + static_cast<ptrdiff_t>(k++), run_of(m.region, first, last - first));
      windows_.insert(m.region, first, last - first, batch_);
    }
  }
  rg.bitmap.set(run.first_page, run.pages);
  accounting_.charge(run.region, run.size);
  windows_.insert(run.region, run.first_page, run.pages, batch_);
  // The room the UNMAP was to make is not there: give up planned maps, last first, until the
  // total fits the limit again (their groups are answered INVALID).
  while (accounting_.limit() != 0 && accounting_.total() > accounting_.limit() && !plan.maps.empty()) {
    drop_map(plan.maps.back());
    plan.maps.pop_back();
  }
}

void FaultEngine::finish(FaultPlan& out) {
  uint32_t begin = 0;
  for (size_t g = 0; g < out.responses.size(); ++g) {
    uint32_t end = out.group_pages_end[g];
    auto& resp = out.responses[g];
    for (uint32_t k = begin; k < end && resp.code == FaultCode::kSuccess; ++k) {
      if (!regions_[out.pages[k].region].bitmap.test(out.pages[k].page)) resp.code = FaultCode::kInvalid;
    }
    if (resp.code != FaultCode::kSuccess) stats_.invalid_groups++;
    begin = end;
  }
}

std::vector<DmaRun> FaultEngine::take_all_windows() {
  std::vector<DmaRun> runs;
  windows_.for_each([&](const WindowTable::Window& w) {
    Region& rg = regions_[w.region];
    runs.push_back(run_of(w.region, w.first, w.pages));
    rg.bitmap.clear(w.first, w.pages);
    accounting_.release(w.region, w.pages * rg.spec.page_size);
  });
  windows_.clear();
  return runs;
}

std::vector<DmaRun> FaultEngine::take_windows(uint32_t i) {
  std::vector<DmaRun> runs;
  std::vector<uint32_t> ids;
  Region& rg = regions_[i];
  windows_.for_each([&](const WindowTable::Window& w) {
    if (w.region != i) return;
    runs.push_back(run_of(w.region, w.first, w.pages));
    rg.bitmap.clear(w.first, w.pages);
    accounting_.release(w.region, w.pages * rg.spec.page_size);
    ids.push_back(windows_.find(w.region, w.first));
  });
  for (uint32_t id : ids) windows_.erase(id);
  return runs;
}

}  // namespace pinless::iommu
