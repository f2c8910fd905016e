// libFuzzer target: a guest driving the virtio-iommu through its virtio-pci transport and split
// virtqueues. The input configures the device (granule, aperture, domain range, probe_size,
// bypass, features, each endpoint's reserved ranges), brings it up (features, queue sizes and
// ring addresses of its choosing), then runs steps: requests (ATTACH, DETACH, MAP, UNMAP, PROBE
// with any fields, truncated or padded, unknown types) split over descriptors with a writable
// part of any size; raw descriptors (loops, INDIRECT, out-of-range indices, addresses and
// lengths), avail ring entries and indices, raw RAM bytes; notifications of any queue; BAR
// writes (common and device config, notify, MSI-X); host failures; reset and bring-up again.
// Checked, abort() on a violation: no crash or sanitizer report (guest RAM is one heap block,
// so ASan sees any access outside it); the model's domains and mappings stay consistent with
// the fake host (the unit tests' check: no overlap, inside the aperture, as the host holds
// them); a notification the device must ignore changes no RAM; and, while the rings are laid
// out so that the device's writes cannot change what it reads, a notification does what a
// reference walk of the rings (queue.h's rules) says: every available chain consumed, or
// DEVICE_NEEDS_RESET at the first broken one; each returned with used length 0 (nothing
// written) or its whole writable part, ending in a spec status; no byte written but those
// parts and the used ring. Built and run by scripts/fuzz.
#define DOCTEST_CONFIG_DISABLE  // the unit tests' fake host and consistency check, without doctest
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <source_location>
#include <vector>

#include "../unit/virtio/fake_guest_ram.h"
#include "../unit/virtio/iommu/viommu_rig.h"
#include "fuzz_input.h"
#include "pinless/base/sys.h"
#include "pinless/virtio/iommu/device.h"
#include "pinless/virtio/virtio_pci.h"

using namespace pinless;
using namespace pinless::virtio;
using pinless::virtio::testing::FakeViommuHost;
using pinless::virtio::testing::inconsistency;
using pinless::virtio::testing::test_config;
using pinless::testing::FakeGuestRam;

namespace {

void check(bool ok, std::source_location at = std::source_location::current()) { fuzz::check(ok, "virtio_iommu", at); }

constexpr uint64_t kRamBase = 0x40000, kRamSize = 0x10000;
constexpr uint64_t kBufStart = 0x3000;  // request buffers, from here to the end of RAM
// Where the driver puts each queue's rings by default (RAM offsets; room for the maximum sizes).
constexpr uint64_t kRings[2][3] = {{0x0000, 0x1000, 0x1800}, {0x2400, 0x2800, 0x2900}};
// Common configuration fields (virtio 1.x, 4.1.4.3).
constexpr uint64_t kDriverFeatureSelect = 0x08, kDriverFeature = 0x0c, kStatus = 0x14, kQueueSelect = 0x16,
                   kQueueSize = 0x18, kQueueEnable = 0x1c, kQueueDesc = 0x20, kQueueDriver = 0x28, kQueueDevice = 0x30;

using Ram = std::vector<uint8_t>;  // a copy of guest RAM
struct Span {
  uint64_t gpa = 0, len = 0;
  bool overlaps(Span o) const { return len && o.len && gpa < o.gpa + o.len && o.gpa < gpa + len; }
};
bool in_ram(uint64_t gpa, uint64_t len) {
  return gpa >= kRamBase && gpa - kRamBase <= kRamSize && len <= kRamSize - (gpa - kRamBase);
}
template <typename T>
T load(const Ram& m, uint64_t gpa) {
  T v{};
  if (in_ram(gpa, sizeof v)) std::memcpy(&v, m.data() + (gpa - kRamBase), sizeof v);
  return v;
}

// The driver's view of one queue: the layout it was enabled with, and the device's next ring
// index (known from the used index at enable time until a notification it cannot predict).
struct QueueView {
  bool enabled = false;
  QueueLayout layout;
  std::optional<uint16_t> next;
};

// One chain as the reference walk sees it.
struct Walked {
  uint16_t head = 0;
  std::vector<Span> writable;
  uint64_t writable_bytes = 0;
};

// queue.h's rules: every index below the size, at most `size` descriptors, no INDIRECT, total
// length within 32 bits, every buffer inside RAM, no readable buffer after a writable one.
std::optional<Walked> walk(const Ram& m, const QueueLayout& l, uint16_t head) {
  Walked c{head, {}, 0};
  uint64_t total = 0;
  for (uint32_t n = 0, i = head;; ++n) {
    if (i >= l.size || n == l.size) return std::nullopt;
    const uint64_t d = l.desc.value() + 16ull * i;
    const uint64_t addr = load<uint64_t>(m, d);
    const uint32_t len = load<uint32_t>(m, d + 8);
    const uint16_t flags = load<uint16_t>(m, d + 12);
    if ((flags & kDescFlagIndirect) || (total += len) > UINT32_MAX || !in_ram(addr, len)) return std::nullopt;
    if (flags & kDescFlagWrite) {
      c.writable.push_back({addr, len});
      c.writable_bytes += len;
    } else if (!c.writable.empty()) {
      return std::nullopt;
    }
    if (!(flags & kDescFlagNext)) return c;
    i = load<uint16_t>(m, d + 14);
  }
}

struct Bench {
  ViommuConfig cfg;
  FakeViommuHost host;
  FakeGuestRam ram{Gpa(kRamBase), kRamSize};
  ViommuDevice* dev = nullptr;
  std::unique_ptr<VirtioPciDevice> pci;
  QueueView q[2];
  uint16_t next_desc = 0;
  uint64_t next_buf = kBufStart;

  std::span<uint8_t> bytes(uint64_t gpa, uint64_t len) {
    auto s = ram.slice(Gpa(gpa), len);
    return s ? *s : std::span<uint8_t>{};
  }
  Ram snapshot() {
    auto s = bytes(kRamBase, kRamSize);
    return Ram(s.begin(), s.end());
  }
  template <typename T>
  T get(uint64_t gpa) {
    T v{};
    if (auto s = bytes(gpa, sizeof v); s.size() == sizeof v) std::memcpy(&v, s.data(), sizeof v);
    return v;
  }
  template <typename T>
  void put(uint64_t gpa, T v) {
    if (auto s = bytes(gpa, sizeof v); s.size() == sizeof v) std::memcpy(s.data(), &v, sizeof v);
  }
  void wr(uint64_t off, size_t n, uint64_t v) { pci->write(off, std::span<const uint8_t>(reinterpret_cast<uint8_t*>(&v), n)); }
  uint64_t rd(uint64_t off, size_t n) {
    uint64_t v = 0;
    pci->read(off, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&v), n));
    return v;
  }

  // After a config write: which queues are enabled now, and for one enabled just now, its
  // layout and the used index the device resumes from.
  void sync() {
    const uint64_t sel = rd(kQueueSelect, 2);
    for (uint16_t i = 0; i < 2; ++i) {
      wr(kQueueSelect, 2, i);
      const bool on = rd(kQueueEnable, 2) == 1;
      if (on && !q[i].enabled) {
        auto addr = [&](uint64_t off) { return Gpa(rd(off, 4) | rd(off + 4, 4) << 32); };
        q[i].layout = {uint16_t(rd(kQueueSize, 2)), addr(kQueueDesc), addr(kQueueDriver), addr(kQueueDevice)};
        q[i].next = get<uint16_t>(q[i].layout.device.value() + 2);
      }
      q[i].enabled = on;
    }
    wr(kQueueSelect, 2, sel);
  }

  // Reset, then what a driver does: features, FEATURES_OK, queue setup, DRIVER_OK.
  void bring_up(FuzzedDataProvider& in) {
    host.fail_next.clear();  // injected failures are for notifications only
    wr(kStatus, 1, 0);
    sync();
    if (in.ConsumeBool()) std::fill_n(bytes(kRamBase, kBufStart).begin(), kBufStart, 0);  // as Linux: zeroed rings
    wr(kStatus, 1, kStatusAcknowledge | kStatusDriver);
    uint64_t f = cfg.features;  // all of them, as Linux takes them
    switch (in.ConsumeIntegralInRange(0, 7)) {
      case 0: f = in.ConsumeIntegral<uint64_t>(); break;
      case 1: f &= ~uint64_t{in.ConsumeIntegral<uint8_t>()}; break;
    }
    wr(kDriverFeatureSelect, 4, 0);
    wr(kDriverFeature, 4, uint32_t(f));
    wr(kDriverFeatureSelect, 4, 1);
    wr(kDriverFeature, 4, uint32_t(f >> 32));
    wr(kStatus, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    for (uint16_t i = 0; i < 2; ++i) {
      if (in.ConsumeIntegralInRange(0, 15) == 0) continue;  // left disabled
      wr(kQueueSelect, 2, i);
      if (in.ConsumeBool()) wr(kQueueSize, 2, in.ConsumeBool() ? 1u << in.ConsumeIntegralInRange(0, 8) : in.ConsumeIntegral<uint16_t>());
      const bool anywhere = in.ConsumeIntegralInRange(0, 15) == 0;
      for (int r = 0; r < 3; ++r) {
        uint64_t gpa = anywhere ? in.ConsumeIntegral<uint64_t>() : kRamBase + kRings[i][r];
        wr(kQueueDesc + 8 * r, 4, uint32_t(gpa));
        wr(kQueueDesc + 8 * r + 4, 4, uint32_t(gpa >> 32));
      }
      wr(kQueueEnable, 2, 1);
    }
    wr(kStatus, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    sync();
    check_model();
  }

  // The model's state holds together and matches the fake host (the unit tests' check).
  void check_model() { check(inconsistency(dev->model(), host, cfg).empty()); }

  uint64_t alloc(uint64_t len) {
    if (next_buf + len > kRamSize) next_buf = kBufStart;
    uint64_t gpa = kRamBase + next_buf;
    next_buf = (next_buf + len + 7) & ~uint64_t{7};
    return gpa;
  }
  void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    const uint64_t d = q[0].layout.desc.value() + 16ull * i;
    put(d, addr);
    put(d + 8, len);
    put(d + 12, flags);
    put(d + 14, next);
  }
  void offer(uint16_t head) {
    const QueueLayout& l = q[0].layout;
    const uint16_t idx = get<uint16_t>(l.driver.value() + 2);
    put<uint16_t>(l.driver.value() + 4 + 2ull * (idx % l.size), head);
    put<uint16_t>(l.driver.value() + 2, uint16_t(idx + 1));
  }

  // One request chain on the request queue: readable bytes over 1-3 descriptors, then the
  // writable part over 0-2.
  void request(FuzzedDataProvider& in) {
    const QueueLayout& l = q[0].layout;
    if (l.size == 0) return;
    std::vector<uint8_t> req = request_bytes(in);
    const uint8_t type = req[0];
    uint64_t reply = type == uint8_t(viommu::RequestType::kProbe) ? cfg.probe_size + 4 : 4;
    switch (in.ConsumeIntegralInRange(0, 15)) {
      case 0: reply = in.ConsumeIntegralInRange<uint64_t>(0, 700); break;
      case 1: reply = ViommuDevice::kMaxReply - 3 + in.ConsumeIntegralInRange<uint64_t>(0, 11); break;
    }
    std::vector<std::pair<Span, uint16_t>> parts;  // buffer, flags
    const size_t pieces = in.ConsumeIntegralInRange<size_t>(1, 3);
    for (size_t p = 0, at = 0; p < pieces; ++p) {
      const size_t n = p + 1 == pieces ? req.size() - at : in.ConsumeIntegralInRange<size_t>(0, req.size() - at);
      const uint64_t gpa = alloc(n);
      if (auto s = bytes(gpa, n); s.size() == n) std::memcpy(s.data(), req.data() + at, n);
      parts.push_back({{gpa, n}, 0});
      at += n;
    }
    if (reply > 0) {
      const uint64_t first = reply > kRamSize - kBufStart ? reply / 2  // only two buffers hold it
                             : in.ConsumeBool()           ? reply
                                                          : in.ConsumeIntegralInRange<uint64_t>(1, reply);
      parts.push_back({{alloc(first), first}, kDescFlagWrite});
      if (first < reply) parts.push_back({{alloc(reply - first), reply - first}, kDescFlagWrite});
    }
    const uint16_t head = uint16_t(next_desc % l.size);
    for (size_t k = 0; k < parts.size(); ++k) {
      const bool more = k + 1 < parts.size();
      const uint16_t i = uint16_t((next_desc + k) % l.size);
      desc(i, parts[k].first.gpa, uint32_t(parts[k].first.len), uint16_t(parts[k].second | (more ? kDescFlagNext : 0)),
           uint16_t((i + 1) % l.size));
    }
    next_desc = uint16_t(next_desc + parts.size());
    offer(head);
  }

  std::vector<uint8_t> request_bytes(FuzzedDataProvider& in) {
    namespace w = viommu;
    auto domain = [&] { return in.ConsumeIntegralInRange(0, 7) ? in.ConsumeIntegralInRange<uint32_t>(0, 4) : in.ConsumeIntegral<uint32_t>(); };
    auto endpoint = [&] {
      static constexpr uint32_t kEps[] = {0x8, 0x10, 0x18, 0x9};
      return in.ConsumeIntegralInRange(0, 7) ? kEps[in.ConsumeIntegralInRange(0, 3)] : in.ConsumeIntegral<uint32_t>();
    };
    // Mostly granule-aligned addresses in a small window, so that maps collide and unmaps hit.
    auto addr = [&] {
      switch (in.ConsumeIntegralInRange(0, 7)) {
        case 0: return in.ConsumeIntegral<uint64_t>();
        case 1: return 0xfee00000 + in.ConsumeIntegralInRange<uint64_t>(0, 3) * 0x80000;
        default: return in.ConsumeIntegralInRange<uint64_t>(0, 63) * 0x1000;
      }
    };
    auto end_for = [&](uint64_t start) {
      return in.ConsumeIntegralInRange(0, 7) ? start + in.ConsumeIntegralInRange<uint64_t>(1, 8) * 0x1000 - 1 : in.ConsumeIntegral<uint64_t>();
    };
    auto flags = [&](uint32_t usual) { return in.ConsumeIntegralInRange(0, 7) ? usual : in.ConsumeIntegral<uint32_t>(); };
    std::vector<uint8_t> r(w::probe::kReadable + 8, 0);
    const uint8_t type = in.ConsumeIntegralInRange(0, 15) ? in.ConsumeIntegralInRange(1, 5) : in.ConsumeIntegral<uint8_t>();
    r[0] = type;
    switch (type) {
      case uint8_t(w::RequestType::kAttach):
        w::put_le32(r, w::attach::kDomain, domain());
        w::put_le32(r, w::attach::kEndpoint, endpoint());
        w::put_le32(r, w::attach::kFlags, flags(in.ConsumeBool() ? 0 : w::attach::kFlagBypass));
        w::put_le32(r, w::attach::kReserved, flags(0));
        break;
      case uint8_t(w::RequestType::kDetach):
        w::put_le32(r, w::detach::kDomain, domain());
        w::put_le32(r, w::detach::kEndpoint, endpoint());
        break;
      case uint8_t(w::RequestType::kMap): {
        const uint64_t s = addr();
        w::put_le32(r, w::map::kDomain, domain());
        w::put_le64(r, w::map::kVirtStart, s);
        w::put_le64(r, w::map::kVirtEnd, end_for(s));
        w::put_le64(r, w::map::kPhysStart, addr());
        w::put_le32(r, w::map::kFlags, flags(in.ConsumeIntegralInRange(0, 3)));
        break;
      }
      case uint8_t(w::RequestType::kUnmap): {
        const uint64_t s = addr();
        w::put_le32(r, w::unmap::kDomain, domain());
        w::put_le64(r, w::unmap::kVirtStart, s);
        w::put_le64(r, w::unmap::kVirtEnd, end_for(s));
        break;
      }
      case uint8_t(w::RequestType::kProbe):
        w::put_le32(r, w::probe::kEndpoint, endpoint());
        break;
      default:
        for (size_t i = 1; i < r.size(); ++i) r[i] = in.ConsumeIntegral<uint8_t>();
    }
    size_t len = w::readable_size(type);
    if (len == 0 || in.ConsumeIntegralInRange(0, 7) == 0) len = in.ConsumeIntegralInRange<size_t>(1, r.size());
    r.resize(len);
    return r;
  }

  // A raw descriptor: mostly a small buffer among the request buffers, else anything.
  void raw_desc(FuzzedDataProvider& in) {
    const QueueLayout& l = q[0].layout;
    if (l.size == 0) return;
    const uint16_t i = in.ConsumeIntegralInRange(0, 7) ? in.ConsumeIntegral<uint16_t>() % l.size : in.ConsumeIntegral<uint16_t>();
    const bool usual = in.ConsumeIntegralInRange(0, 7) != 0;
    const uint64_t addr = usual ? kRamBase + in.ConsumeIntegralInRange(kBufStart, kRamSize) : in.ConsumeIntegral<uint64_t>();
    const uint32_t len = usual ? in.ConsumeIntegralInRange<uint32_t>(0, 256) : in.ConsumeIntegral<uint32_t>();
    const uint16_t flags = usual ? in.ConsumeIntegralInRange<uint16_t>(0, 7) : in.ConsumeIntegral<uint16_t>();
    desc(i, addr, len, flags, in.ConsumeBool() ? in.ConsumeIntegral<uint16_t>() % l.size : in.ConsumeIntegral<uint16_t>());
  }

  // The rings cannot change under the device while it serves them: no writable buffer and not
  // the used ring overlaps the descriptor table or the avail ring, and no writable buffer
  // overlaps the used ring. Only then can a reference walk predict the device.
  bool intact(const Ram& m) const {
    const QueueLayout& l = q[0].layout;
    const Span desc{l.desc.value(), QueueLayout::desc_bytes(l.size)}, avail{l.driver.value(), QueueLayout::driver_bytes(l.size)},
        used{l.device.value(), QueueLayout::device_bytes(l.size)};
    if (used.overlaps(desc) || used.overlaps(avail)) return false;
    for (uint16_t i = 0; i < l.size; ++i) {
      const uint64_t d = desc.gpa + 16ull * i;
      const Span buf{load<uint64_t>(m, d), load<uint32_t>(m, d + 8)};
      if ((load<uint16_t>(m, d + 12) & kDescFlagWrite) && in_ram(buf.gpa, buf.len) &&
          (buf.overlaps(desc) || buf.overlaps(avail) || buf.overlaps(used)))
        return false;
    }
    return true;
  }

  // A notification of queue `index` (>= 2: none), made by `how`, and what it must do.
  template <typename Fn>
  void kick(uint16_t index, Fn&& how) {
    const Ram before = snapshot();
    const uint8_t status = pci->status();
    const bool live = index < 2 && q[index].enabled && (status & kStatusDriverOk) && !(status & kStatusNeedsReset);
    const bool predictable = live && index == 0 && q[0].next && intact(before);
    how();
    host.fail_next.clear();  // an injected failure applies to this notification only
    check_model();
    const Ram after = snapshot();
    if (!live || index != 0) {
      check(after == before && pci->status() == status);
      return;
    }
    if (!predictable) {
      q[0].next.reset();
      return;
    }
    expect(before, after);
  }

  // The device against the reference walk of the rings as they were before the notification.
  void expect(const Ram& before, const Ram& after) {
    const QueueLayout& l = q[0].layout;
    const uint64_t avail = l.driver.value(), used = l.device.value();
    const uint16_t next = *q[0].next;
    std::vector<Walked> chains;
    bool broken = uint16_t(load<uint16_t>(before, avail + 2) - next) > l.size;
    for (uint16_t n = 0; !broken && n < uint16_t(load<uint16_t>(before, avail + 2) - next); ++n) {
      auto c = walk(before, l, load<uint16_t>(before, avail + 4 + 2ull * (uint16_t(next + n) % l.size)));
      if (c) chains.push_back(std::move(*c));
      broken = !c;
    }
    check(bool(pci->status() & kStatusNeedsReset) == broken);
    const uint16_t pushed = uint16_t(chains.size());
    check(load<uint16_t>(after, used + 2) == (pushed ? uint16_t(next + pushed) : load<uint16_t>(before, used + 2)));
    // A chain's tail can be read back unless a writable buffer of this notification shares its
    // bytes (a later reply may have overwritten it).
    std::vector<std::pair<Span, uint16_t>> parts;  // every writable buffer, with its chain
    for (uint16_t n = 0; n < pushed; ++n) {
      for (Span s : chains[n].writable) {
        if (s.len > 0) parts.push_back({s, n});
      }
    }
    std::sort(parts.begin(), parts.end(), [](const auto& a, const auto& b) { return a.first.gpa < b.first.gpa; });
    std::vector<bool> shared(pushed, false);
    for (size_t i = 0; i < parts.size(); ++i) {
      for (size_t j = i + 1; j < parts.size() && parts[i].first.overlaps(parts[j].first); ++j) {
        shared[parts[i].second] = shared[parts[j].second] = true;
      }
    }
    std::vector<Span> written{{used + 2, pushed ? 2u : 0u}};
    for (uint16_t n = 0; n < pushed; ++n) {
      const Walked& c = chains[n];
      const uint64_t e = used + 4 + 8ull * (uint16_t(next + n) % l.size);
      written.push_back({e, 8});
      const uint32_t len = load<uint32_t>(after, e + 4);
      check(load<uint32_t>(after, e) == c.head);
      check(len == 0 || (len == c.writable_bytes && len <= ViommuDevice::kMaxReply && len >= viommu::kTailSize));
      if (len == 0) continue;  // nothing written
      written.insert(written.end(), c.writable.begin(), c.writable.end());
      if (shared[n]) continue;
      std::vector<uint8_t> reply;
      for (Span s : c.writable) reply.insert(reply.end(), after.begin() + (s.gpa - kRamBase), after.begin() + (s.gpa - kRamBase + s.len));
      const uint8_t* tail = reply.data() + reply.size() - viommu::kTailSize;
      check(tail[0] < viommu::kStatusCount && tail[1] == 0 && tail[2] == 0 && tail[3] == 0);
    }
    // Every byte outside what may have been written is as it was.
    std::sort(written.begin(), written.end(), [](Span a, Span b) { return a.gpa < b.gpa; });
    uint64_t at = 0;  // RAM offset
    for (Span s : written) {
      const uint64_t from = s.gpa - kRamBase;
      if (from > at) check(std::equal(before.begin() + at, before.begin() + from, after.begin() + at));
      at = std::max(at, from + s.len);
    }
    check(std::equal(before.begin() + at, before.end(), after.begin() + at));
    q[0].next = uint16_t(next + pushed);
  }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  set_log_level("off");  // the device warns per bad request; the checks are what matter here
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  Bench bench;
  ViommuConfig& c = bench.cfg;
  c = test_config();
  static constexpr uint64_t kMasks[] = {0x40201000, 0x1000, 0x210000};
  c.page_size_mask = kMasks[in.ConsumeIntegralInRange(0, 2)];
  if (in.ConsumeBool()) c.input_end = 0xffffffff;
  c.domain_end = in.ConsumeIntegralInRange(0, 7) ? in.ConsumeIntegralInRange<uint32_t>(1, 8) : 65535;
  static constexpr uint32_t kProbeSizes[] = {512, 0, 24, 48};
  c.probe_size = in.ConsumeIntegralInRange(0, 7) ? kProbeSizes[in.ConsumeIntegralInRange(0, 3)] : in.ConsumeIntegralInRange<uint32_t>(0, 1024);
  c.bypass = in.ConsumeBool();
  // VERSION_1 and MAP_UNMAP always; the optional features on or off; MMIO sometimes.
  const uint64_t optional = viommu::kFInputRange | viommu::kFDomainRange | viommu::kFProbe | viommu::kFBypassConfig;
  c.features = ViommuConfig::kDefaultFeatures & ~(optional & in.ConsumeIntegral<uint8_t>());
  if (in.ConsumeBool()) c.features |= viommu::kFMmio;
  c.max_mappings_per_domain = in.ConsumeIntegralInRange<size_t>(1, 32);
  for (uint32_t ep : c.endpoints) {
    for (int n = in.ConsumeIntegralInRange(0, 2); n > 0; --n) {
      uint64_t start = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint64_t>(0, 63) * 0x1000 : in.ConsumeIntegral<uint64_t>();
      bench.host.reserved_ranges[ep].push_back({Iova(start), in.ConsumeBool() ? 0x2000 : in.ConsumeIntegral<uint64_t>()});
    }
  }
  auto model = ViommuModel::create(bench.host, c);
  check(bool(model));
  auto dev = std::make_unique<ViommuDevice>(std::move(*model));
  bench.dev = dev.get();
  auto pci = VirtioPciDevice::create(linux_sys(), std::move(dev), bench.ram, nullptr);
  check(bool(pci));
  bench.pci = std::move(*pci);
  bench.bring_up(in);

  static constexpr const char* kHostCalls[] = {"attach", "bypass", "block", "map", "unmap"};
  static constexpr int kErrnos[] = {ENOMEM, EFAULT, EINVAL, EBUSY, EIO, ENOENT, ENOSPC, EOPNOTSUPP};
  for (int steps = 0; steps < 256 && in.remaining_bytes() > 0; ++steps) {
    switch (in.ConsumeIntegralInRange(0, 19)) {
      case 0: bench.bring_up(in); break;
      case 1: bench.raw_desc(in); break;
      case 2:
        if (bench.q[0].layout.size) bench.offer(in.ConsumeIntegral<uint16_t>() % bench.q[0].layout.size);
        break;
      case 3: bench.put<uint16_t>(bench.q[0].layout.driver.value() + 2, in.ConsumeIntegral<uint16_t>()); break;
      case 4: {
        const uint64_t gpa = kRamBase + in.ConsumeIntegralInRange<uint64_t>(0, kRamSize - 1);
        bench.put<uint8_t>(gpa, in.ConsumeIntegral<uint8_t>());
        break;
      }
      case 5: {
        // Any BAR access: common config, ISR, device config, notify, MSI-X table and PBA.
        static constexpr uint64_t kAreas[] = {0x0000, 0x1000, 0x2000, 0x3000, 0x4000, 0x5000};
        const uint64_t off = kAreas[in.ConsumeIntegralInRange(0, 5)] + in.ConsumeIntegralInRange<uint64_t>(0, 63);
        const size_t n = in.ConsumeIntegralInRange<size_t>(1, 8);
        bench.host.fail_next.clear();  // injected failures are for notifications only
        const uint64_t v = in.ConsumeIntegral<uint64_t>();
        if (in.ConsumeBool()) {
          (void)bench.rd(off, n);
        } else if (const uint64_t rel = off - VirtioPciDevice::kNotifyOffset; rel < 8) {
          bench.kick(rel % 4 ? 2 : uint16_t(rel / 4), [&] { bench.wr(off, n, v); });  // a notification, or nothing
        } else {
          bench.wr(off, n, v);
          bench.sync();
          bench.check_model();
        }
        break;
      }
      case 6: {
        const char* call = kHostCalls[in.ConsumeIntegralInRange(0, 4)];
        bench.host.fail_next[call] = kErrnos[in.ConsumeIntegralInRange(0, 7)];
        break;
      }
      case 7: {
        const uint16_t q = in.ConsumeIntegralInRange(0, 7) ? 0 : in.ConsumeIntegralInRange<uint16_t>(1, 2);
        if (in.ConsumeBool()) {
          bench.kick(q, [&] { bench.pci->notify(q); });
        } else {
          bench.kick(q, [&] { bench.wr(VirtioPciDevice::notify_offset(q), 2, q); });
        }
        break;
      }
      default: bench.request(in); break;
    }
  }
  bench.kick(0, [&] { bench.pci->notify(0); });
  return 0;
}
