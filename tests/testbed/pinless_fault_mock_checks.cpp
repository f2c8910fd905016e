// pinless_fault_mock: the checks of a run while pinless serves faults (see pinless_fault_mock.h).
#include <cstdlib>
#include <deque>

#include "pinless_fault_mock.h"

namespace pinless::testbed::fault_mock {

uint64_t Run::static_pages() const {
  uint64_t n = 0;
  for (const Region& g : regions_)
    if (!g.fault) n += pinned_part(g).count();
  return n;
}

// pinless has taken the mock device off home (onto its fault HWPT, or onto its IOAS when it
// has no fault region): home's ranges are no longer those of an IOAS with the device attached.
void Run::device_moved() {
  int e = 0;
  auto away = ranges(home_, &e);
  check(!e && !same(away, home_attached_), name("device-moved"),
        "home ioas %u ranges while pinless runs: %s (with the device attached: %s)", home_,
        e ? std::strerror(e) : text(away).c_str(), text(home_attached_).c_str());
}

void Run::check_pin_region() {
  bool pinned = mapped(kPinStart, kPinEnd - kPinStart);
  int below = ioas_covered(0, kPage);
  long kb = vmpin();
  long want = long((kPinEnd - kPinStart) / 1024);
  check(pinned && below == ENOENT && kb == want, name("pin-region"),
        "0x%llx..0x%llx in the mock page table of hwpt %u: %s; GPA 0 (below the mock aperture) %s; pinless VmPin %ld kB "
        "before any fault (want %ld)",
        ull(kPinStart), ull(kPinEnd - 1), hwpt_, pinned ? "mapped" : "NOT MAPPED",
        below == ENOENT ? "unmapped" : below ? std::strerror(below) : "MAPPED", kb, want);
}

// The switch run before any switch: no fault region, so no fault HWPT to read with
// MD_CHECK_MAP; pinless's IOAS maps both pin regions from the mock aperture on (16M..128M), and
// pinless has pinned all of it.
void Run::pinned_at_start() {
  const uint64_t len = ram_size_ - kPinStart;
  int e = ioas_covered(kPinStart, len);
  int below = ioas_covered(0, kPage);
  long want = long(len / 1024);
  long kb = vmpin_reaching(want);
  check(e == 0 && below == ENOENT && kb == want, name("pinned-at-start"),
        "0x%llx..0x%llx (regions 0 and 1 from the mock aperture on) in pinless's ioas %u: %s; GPA 0 (below the mock "
        "aperture) %s; pinless VmPin %ld kB before any switch (want %ld)",
        ull(kPinStart), ull(ram_size_ - 1), ioas_, e == 0 ? "mapped" : e == ENOENT ? "NOT ALL MAPPED" : std::strerror(e),
        below == ENOENT ? "unmapped" : below ? std::strerror(below) : "MAPPED", kb, want);
}

// Sequential 4 MiB touch in 4 KiB steps from a 2 MiB aligned start; a page faults only if the
// mock page table does not translate it.
void Run::touch(const Region& g) {
  long kb0 = vmpin();
  uint64_t start = g.gpa + kTouchOffset, faults = 0, t0 = now_us();
  bool first_ok = false;
  std::string first;
  for (uint64_t off = 0; off < kTouchBytes; off += kPage) {
    if (mapped(start + off, kPage)) continue;
    Span w = fault(g, start + off);
    if (++faults == 1) first = exact(w, &first_ok);
  }
  uint64_t ms = (now_us() - t0) / 1000;
  long kb = vmpin_reaching(kb0 + long(kTouchBytes / 1024)) - kb0;
  uint64_t want = kTouchBytes / kPage / g.premap;
  bool all = mapped(start, kTouchBytes);
  check(faults == want && first_ok && all && uint64_t(kb) == kTouchBytes / 1024, name("touch-premap-" + std::to_string(g.premap)),
        "4 MiB at 0x%llx: %llu faults (want %llu), %llu ms; first fault mapped exactly %s; all 4 MiB mapped: %s; VmPin "
        "+%ld kB (want +%llu)",
        ull(start), ull(faults), ull(want), ull(ms), first.c_str(), all ? "yes" : "NO", kb, ull(kTouchBytes / 1024));
}

// Exact windows: a fault at an unaligned address mid-region, and one two pages before the
// region end (the window must stop at the region boundary; the next region's first page
// stays unmapped).
void Run::windows(const Region& g) {
  long kb0 = vmpin();
  bool ok1 = false, ok2 = false;
  uint64_t a1 = g.gpa + kProbeOffset, a2 = g.gpa + g.size - 2 * kPage;
  Span w1 = fault(g, a1);
  std::string s1 = exact(w1, &ok1);
  Span w2 = fault(g, a2);
  std::string s2 = exact(w2, &ok2);
  uint64_t want = (w1.count() + w2.count()) * kPage / 1024;
  long kb = vmpin_reaching(kb0 + long(want)) - kb0;
  check(ok1 && ok2 && w2.end * kPage <= g.gpa + g.size && uint64_t(kb) == want, name("window-premap-" + std::to_string(g.premap)),
        "fault at 0x%llx mapped exactly %s; fault at 0x%llx mapped exactly %s; VmPin +%ld kB (want +%llu)", ull(a1),
        s1.c_str(), ull(a2), s2.c_str(), kb, ull(want));
}

// The control API changes region g's premap window while pinless serves faults
// (`pinless ctl ram-region`): the next fault maps exactly the new window, and the exit
// timeline's region shows the new premap (timeline-regions checks g.premap).
void Run::premap_change(Region& g) {
  const std::string out = api_socket_ + ".ctl.txt";
  const std::string cmd = "'" + pinless_path_ + "' ctl --api-socket '" + api_socket_ + "' ram-region --offset " +
                          std::to_string(g.gpa) + " --premap " + std::to_string(kChangedPremap) + " >'" + out + "' 2>&1";
  int rc = std::system(cmd.c_str());
  const uint64_t was = g.premap;
  if (rc != 0) {
    check(false, name("premap-change"), "pinless ctl ram-region failed (status %d): %s", rc, file_tail(out, 3).c_str());
    return;
  }
  g.premap = kChangedPremap;
  long kb0 = vmpin();
  bool ok = false;
  uint64_t addr = g.gpa + kChangeOffset;
  Span w = fault(g, addr);
  std::string s = exact(w, &ok);
  std::string said = file_tail(out, 1);
  while (!said.empty() && (said.back() == '\n' || said.back() == '\r')) said.pop_back();
  uint64_t want = w.count() * kPage / 1024;
  long kb = vmpin_reaching(kb0 + long(want)) - kb0;
  check(ok && w.count() == kChangedPremap && uint64_t(kb) == want, name("premap-change"),
        "ctl ram-region --premap %llu (was %llu): \"%s\"; then a fault at 0x%llx mapped exactly %s; VmPin +%ld kB "
        "(want +%llu)",
        ull(kChangedPremap), ull(was), said.c_str(), ull(addr), s.c_str(), kb, ull(want));
}

// Thousands of faults at distinct, non-adjacent pages, triggered back to back from this one
// thread; then every page must get mapped within a bounded time.
void Run::burst(const Region& g) {
  long kb0 = vmpin();
  uint64_t base = g.gpa + kBurstOffset, t0 = now_us();
  for (unsigned i = 0; i < kBurst; ++i) trigger(base + i * kBurstStride * kPage);
  uint64_t t1 = now_us();
  unsigned done = 0;
  bool drained = poll_until(
      [&] {
        while (done < kBurst && mapped(base + done * kBurstStride * kPage, kPage)) done++;
        return done == kBurst;
      },
      kBurstMs);
  uint64_t t2 = now_us();
  for (unsigned i = 0; i < done; ++i) {
    uint64_t p = (base / kPage) + i * kBurstStride;
    if (!model_[p]) set_model(p, true), fault_pages_++;
  }
  peak_pages_ = std::max(peak_pages_, model_pages_);
  unsigned gaps_mapped = 0;
  for (unsigned i = 0; i + 1 < kBurst; ++i)
    for (uint64_t k = 1; k < kBurstStride; ++k)
      if (ioas_covered(base + (i * kBurstStride + k) * kPage, kPage) != ENOENT) gaps_mapped++;
  long kb = vmpin_reaching(kb0 + long(kBurst * kPage / 1024)) - kb0;
  check(drained && gaps_mapped == 0 && uint64_t(kb) == kBurst * kPage / 1024, name("burst"),
        "%u TRIGGER_IOPF over 0x%llx..0x%llx (every %llu pages) in %llu ms; %u of %u pages mapped after %llu ms (limit %d "
        "ms); %u of the %u pages between them mapped (want 0); VmPin +%ld kB (want +%llu)",
        kBurst, ull(base), ull(base + uint64_t(kBurst) * kBurstStride * kPage - 1), ull(kBurstStride),
        ull((t1 - t0) / 1000), done, kBurst, ull((t2 - t1) / 1000), kBurstMs, gaps_mapped,
        (kBurst - 1) * unsigned(kBurstStride - 1), kb, ull(kBurst * kPage / 1024));
  if (!drained) abort_run("burst not drained");
}

// A fault at an IOVA in the mock aperture but outside guest RAM maps nothing. A fault after it
// (same queue, answered in order) tells when pinless has dealt with it.
void Run::outside_ram(const Region& g) {
  long kb0 = vmpin();
  trigger(kOutsideRam);
  invalid_++;
  uint64_t sentinel = g.gpa + g.size - 64 * kPage;
  fault(g, sentinel);
  int e = ioas_covered(kOutsideRam, kPage), control = ioas_covered(sentinel, kPage);
  long kb = vmpin_reaching(kb0 + 4) - kb0;
  check(e == ENOENT && control == 0 && kb == 4, name("outside-ram"),
        "fault at 0x%llx (%lluM RAM): pinless's IOAS there %s (IOAS_COPY probe; the same probe on the fault at 0x%llx "
        "after it: %s); VmPin +%ld kB (want +4, the second fault only)",
        ull(kOutsideRam), ull(ram_size_ / kMiB), e == ENOENT ? "unmapped (ENOENT)" : e ? std::strerror(e) : "MAPPED",
        ull(sentinel), control ? std::strerror(control) : "mapped", kb);
}

// --pin-limit 49M,reclaim=on: 48 MiB of static pins leave room for 16 aligned 64 KiB windows.
// 64 windows faulted one after the other: from the 17th on each evicts the least recently
// faulted one, VmPin never exceeds the cap, and only the newest 16 stay mapped. A device
// touching an evicted page faults again and gets it back, evicting the then oldest window.
void Run::reclaim(const Region& g) {
  const uint64_t win = g.premap * kPage, start = g.gpa + kTouchOffset;
  const long cap_kb = long(kPinLimit / 1024);
  std::deque<Span> lru;
  long peak = 0;
  auto fault_lru = [&](uint64_t addr) {
    if (lru.size() == kRoomWindows) {  // what pinless must evict to make room
      for (uint64_t p = lru.front().first; p < lru.front().end; ++p) set_model(p, false);
      reclaims_++;
      pages_reclaimed_ += lru.front().count();
      lru.pop_front();
    }
    lru.push_back(fault(g, addr));
    peak = std::max(peak, vmpin());
  };
  uint64_t t0 = now_us();
  for (uint64_t i = 0; i < 64; ++i) fault_lru(start + i * win);
  uint64_t ms = (now_us() - t0) / 1000;
  bool newest = ioas_covered(start + 48 * win, 16 * win) == 0, older = none_mapped(start, 48 * win);
  long kb = vmpin_reaching(cap_kb);
  check(newest && older && peak <= cap_kb && kb == cap_kb, name("reclaim"),
        "64 windows of %llu kB faulted at 0x%llx.. in %llu ms with room for %llu: newest 16 mapped: %s, the 48 before "
        "them unmapped: %s; VmPin peak %ld kB, now %ld kB (cap %ld kB)",
        ull(win / 1024), ull(start), ull(ms), ull(kRoomWindows), newest ? "yes" : "NO", older ? "yes" : "NO", peak, kb,
        cap_kb);
  fault_lru(start + 5 * kPage);  // in the first window, evicted long ago
  bool back = ioas_covered(start, win) == 0, evicted = none_mapped(start + 48 * win, win);
  kb = vmpin_reaching(cap_kb);
  check(back && evicted && kb == cap_kb, name("reclaim-refault"),
        "a fault in the evicted window 0x%llx mapped it again: %s; the then oldest window 0x%llx evicted: %s; VmPin %ld "
        "kB (cap %ld kB)",
        ull(start), back ? "yes" : "NO", ull(start + 48 * win), evicted ? "yes" : "NO", kb, cap_kb);
}

// --pin-limit 49M,reclaim=off: 16 windows fit; the 17th fault is refused and maps nothing.
// pinless warns with the fault's IOVA when it refuses it; that line says it has been handled.
void Run::limit(const Region& g) {
  const uint64_t win = g.premap * kPage, start = g.gpa + kTouchOffset;
  const long cap_kb = long(kPinLimit / 1024);
  for (uint64_t i = 0; i < kRoomWindows; ++i) fault(g, start + i * win);
  long full = vmpin_reaching(cap_kb);
  uint64_t over = start + kRoomWindows * win;
  trigger(over);
  invalid_++;
  over_limit_++;
  char hex[32];
  std::snprintf(hex, sizeof hex, "0x%llx", ull(over));
  std::string warned = pinless_.wait_line(pinless_.err_path(), hex, 5000);
  if (!pinless_.running()) abort_run("pinless exited (%s)", pinless_.status_text().c_str());
  bool unmapped = none_mapped(over, win);
  long kb = vmpin();
  check(full == cap_kb && unmapped && kb == cap_kb, name("limit"),
        "16 windows of %llu kB filled the cap: VmPin %ld kB (cap %ld kB); the next fault at 0x%llx mapped nothing: %s, "
        "VmPin %ld kB; pinless said: %s",
        ull(win / 1024), full, cap_kb, ull(over), unmapped ? "yes" : "NO", kb,
        warned.empty() ? "(no line with the IOVA within 5 s)" : warned.c_str());
}

// The control API switches pin region g to fault (`pinless ctl ram-region --dma fault`). The VM
// had no fault region, so pinless sets fault mode up now: a fault queue and a fault-capable
// HWPT the device moves onto, named by a second 'dma-ready:' line (hwpt != 0). Then g's static
// pin is gone from pinless's IOAS (every page probed) and from VmPin, while region 0's pins
// stay, in the IOAS and in the new HWPT (which the device uses now). False if the switch did
// not happen or the new HWPT is unknown: the checks after it need fault mode.
bool Run::pin_to_fault(Region& g) {
  const std::string out = api_socket_ + ".pin-to-fault.txt";
  const std::string args = "ram-region --offset " + std::to_string(g.gpa) + " --dma fault --premap " +
                           std::to_string(kSwitchPremap) + " --window aligned";
  uint64_t t0 = now_us();
  int rc = ctl(args, out);
  if (rc != 0) {
    check(false, name("pin-to-fault"), "pinless ctl %s: %s; stderr: %s; stdout: %s", args.c_str(),
          wait_text(rc).c_str(), file_tail(out + ".err", 3).c_str(), file_tail(out, 3).c_str());
    return false;
  }
  uint64_t ctl_ms = (now_us() - t0) / 1000;
  std::string line = wait_fault_ready(kReadyMs);
  uint32_t ioas = 0, hwpt = 0, fault = 0;
  if (line.empty() || !parse_ready(line, &ioas, &hwpt, &fault)) {
    check(false, name("pin-to-fault"),
          "pinless ctl %s said \"%s\" after %llu ms, but no 'dma-ready:' line with a fault HWPT (hwpt != 0) on "
          "pinless's stderr within %d ms (%s); stderr tail:\n%s",
          args.c_str(), last_line(out).c_str(), ull(ctl_ms), kReadyMs, pinless_.status_text().c_str(),
          file_tail(pinless_.err_path(), 8).c_str());
    return false;
  }
  hwpt_ = hwpt;
  fault_ = fault;
  for (uint64_t p = g.first_page(); p < g.first_page() + g.pages(); ++p) set_model(p, false);
  g.fault = true;
  g.premap = kSwitchPremap;
  g.window = "aligned";
  uint64_t t1 = now_us();
  bool gone = none_mapped(g.gpa, g.size);
  uint64_t probe_ms = (now_us() - t1) / 1000;
  int pins = ioas_covered(kPinStart, kPinEnd - kPinStart);
  bool in_hwpt = mapped(kPinStart, kPinEnd - kPinStart);
  long want = long(model_pages_ * kPage / 1024);
  long kb = vmpin_falling_to(want);
  check(ioas == ioas_ && fault != 0 && gone && pins == 0 && in_hwpt && kb == want, name("pin-to-fault"),
        "ctl %s: \"%s\" after %llu ms; %s (want ioas %u, a fault object); region 0x%llx..0x%llx unmapped in the IOAS "
        "page by page: %s (%llu ms); region 0's pins 0x%llx..0x%llx in the IOAS: %s, in the mock page table of the new "
        "hwpt %u: %s; VmPin %ld kB (want %ld)",
        args.c_str(), last_line(out).c_str(), ull(ctl_ms), line.substr(line.find("dma-ready:")).c_str(), ioas_,
        ull(g.gpa), ull(g.gpa + g.size - 1), gone ? "yes" : "NO", ull(probe_ms), ull(kPinStart), ull(kPinEnd - 1),
        pins == 0 ? "mapped" : pins == ENOENT ? "NOT ALL MAPPED" : std::strerror(pins), hwpt_,
        in_hwpt ? "mapped" : "NOT MAPPED", kb, want);
  return true;
}

// The first fault in the region switched to fault maps exactly its aligned premap window.
void Run::fault_after_switch(const Region& g) {
  long kb0 = vmpin();
  bool ok = false;
  uint64_t addr = g.gpa + kSwitchFaultOffset;
  Span w = fault(g, addr);
  std::string s = exact(w, &ok);
  bool aligned = w.count() == g.premap && w.first % g.premap == 0;
  uint64_t want = w.count() * kPage / 1024;
  long kb = vmpin_reaching(kb0 + long(want)) - kb0;
  check(ok && aligned && uint64_t(kb) == want, name("fault-after-switch"),
        "fault at 0x%llx in the region switched to fault (premap %llu %s) mapped exactly %s%s; VmPin +%ld kB (want +%llu)",
        ull(addr), ull(g.premap), g.window.c_str(), s.c_str(), aligned ? "" : " (NOT the aligned premap block)", kb,
        ull(want));
}

// The control API switches fault region g back to pin (`--dma pin`): its fault windows make
// way for a static pin of the whole region, in pinless's IOAS and in the HWPT the device is on
// (the fault HWPT: pinless keeps the device there).
void Run::fault_to_pin(Region& g) {
  const std::string out = api_socket_ + ".fault-to-pin.txt";
  const std::string args = "ram-region --offset " + std::to_string(g.gpa) + " --dma pin";
  uint64_t t0 = now_us();
  int rc = ctl(args, out);
  uint64_t ctl_ms = (now_us() - t0) / 1000;
  if (rc != 0) {
    check(false, name("fault-to-pin"), "pinless ctl %s: %s; stderr: %s; stdout: %s", args.c_str(),
          wait_text(rc).c_str(), file_tail(out + ".err", 3).c_str(), file_tail(out, 3).c_str());
    return;
  }
  Span s = pinned_part(g);
  for (uint64_t p = s.first; p < s.end; ++p) set_model(p, true);  // a static pin: not fault_pages_
  peak_pages_ = std::max(peak_pages_, model_pages_);
  g.fault = false;
  g.premap = 0;
  g.window.clear();
  int e = ioas_covered(g.gpa, g.size);
  bool in_hwpt = mapped(g.gpa, g.size);
  long want = long(model_pages_ * kPage / 1024);
  long kb = vmpin_reaching(want);
  check(e == 0 && in_hwpt && kb == want, name("fault-to-pin"),
        "ctl %s: \"%s\" after %llu ms; region 0x%llx..0x%llx in pinless's IOAS: %s, in the mock page table of hwpt %u: "
        "%s; VmPin %ld kB (want %ld: both regions pinned)",
        args.c_str(), last_line(out).c_str(), ull(ctl_ms), ull(g.gpa), ull(g.gpa + g.size - 1),
        e == 0 ? "mapped" : e == ENOENT ? "NOT ALL MAPPED" : std::strerror(e), hwpt_, in_hwpt ? "mapped" : "NOT MAPPED",
        kb, want);
}

// pinless's IOAS holds exactly what this program expects, page by page over all guest RAM
// (runs of expected pages copied whole, every other page probed alone), and VmPin says the same.
void Run::ioas_state() {
  uint64_t t0 = now_us(), wrong = 0, first_wrong = ~0ull, mapped_pages = 0;
  for (uint64_t p = 0; p < ram_pages();) {
    uint64_t q = p;
    while (q < ram_pages() && model_[q] == model_[p]) q++;
    if (model_[p]) {
      mapped_pages += q - p;
      if (ioas_covered(p * kPage, (q - p) * kPage) != 0) wrong++, first_wrong = std::min(first_wrong, p);
    } else {
      for (uint64_t r = p; r < q; ++r)
        if (ioas_covered(r * kPage, kPage) != ENOENT) wrong++, first_wrong = std::min(first_wrong, r);
    }
    p = q;
  }
  if (ioas_covered(kOutsideRam, kPage) != ENOENT) wrong++;
  long want = long(mapped_pages * kPage / 1024);
  long kb = vmpin_reaching(want);
  char where[64] = "";
  if (wrong) std::snprintf(where, sizeof where, " (first at 0x%llx)", ull(first_wrong * kPage));
  check(wrong == 0 && kb == want, name("ioas-state"),
        "pinless's IOAS maps exactly the %llu expected pages of %lluM RAM (pin regions %llu MiB + %llu pages by "
        "faults), %llu mismatches%s, %llu ms; VmPin %ld kB (want %ld)",
        ull(mapped_pages), ull(ram_size_ / kMiB), ull(static_pages() * kPage / kMiB), ull(mapped_pages - static_pages()),
        ull(wrong), where, ull((now_us() - t0) / 1000), kb, want);
}

}  // namespace pinless::testbed::fault_mock
