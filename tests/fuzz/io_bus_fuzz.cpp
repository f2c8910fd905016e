// libFuzzer target: the guest's PIO and MMIO address spaces (vmm/src/io_bus.cpp). The input is
// a sequence of operations on one IoBus (see step()): register a range (any base and size,
// often overlapping or next to one already there) for one of 8 recording devices or none,
// unregister one (by its base or any other, as its device or another), and read or write
// 0..8 bytes at any address, often in or just around a claimed range. Device 7 unregisters
// the range it was reached through from inside its write handler, as a BAR move does.
// A plain list of the claimed ranges is the model. Checked after every operation: no crash,
// no sanitizer report, no deadlock; a registration succeeds exactly when the model says it may
// (a device, a non-empty range that does not wrap or pass port 0xffff, no overlap); an
// unregister removes exactly the named range of the named device; an access reaches exactly
// the one device whose range holds all of it, with the offset into that range and the bytes
// written (a read returns what the device gave), or no device at all, reading all-ones; the
// owner of an address and the unclaimed count agree with the model. Built and run by scripts/fuzz.
#include <spdlog/sinks/null_sink.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "fuzz_input.h"
#include "pinless/vmm/io_bus.h"

using namespace pinless;
using pinless::vmm::IoBus;

namespace {

using fuzz::Bytes;

[[noreturn]] void broken(const char* why) { fuzz::broken("io_bus", why); }

struct Claim {
  bool pio;
  uint64_t base, size;
  int dev;
  std::string name;
  bool holds(bool in_pio, uint64_t addr, uint64_t len) const {
    return pio == in_pio && addr >= base && addr - base < size && len <= size - (addr - base);
  }
};

// Records every access; reads give bytes derived from the device and offset.
struct Recorder final : pci::IoDevice {
  struct Access {
    bool write;
    uint64_t offset;
    std::vector<uint8_t> data;
  };
  int index = 0;
  std::vector<Access> log;
  // Device 7: the range to drop from inside write() (set by the caller before each access).
  IoBus* bus = nullptr;
  std::optional<Claim> unmap_on_write;

  static uint8_t fill(int index, uint64_t offset, size_t i) { return uint8_t(index * 0x20 + offset + i); }
  void read(uint64_t offset, std::span<uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i) data[i] = fill(index, offset, i);
    log.push_back({false, offset, {data.begin(), data.end()}});
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    log.push_back({true, offset, {data.begin(), data.end()}});
    if (!unmap_on_write) return;
    const Claim& c = *unmap_on_write;
    bool done = c.pio ? bus->unregister_pio(uint16_t(c.base), this) : bus->unregister_mmio(Gpa(c.base), this);
    if (!done) broken("a device could not unregister itself from its handler");
  }
};

struct World {
  IoBus bus;
  Recorder devs[8];
  std::vector<Claim> claims;  // the model
  uint64_t unclaimed = 0;
  int registrations = 0;
  Bytes& in;

  explicit World(Bytes& input) : in(input) {
    for (int i = 0; i < 8; ++i) devs[i].index = i;
    devs[7].bus = &bus;
  }

  // An address in or around a claimed range of this space (often), or anywhere.
  uint64_t pick(bool pio, bool near) {
    std::vector<const Claim*> same;
    for (const auto& c : claims) {
      if (c.pio == pio) same.push_back(&c);
    }
    if (near && !same.empty()) {
      const Claim& c = *same[in.u8() % same.size()];
      int16_t delta = int16_t(in.u16());
      return (delta & 1) ? c.base + c.size + uint64_t(int64_t(delta >> 1)) : c.base + uint64_t(int64_t(delta));
    }
    return pio ? in.u16() : in.u64();
  }

  uint64_t pick_size() {
    uint8_t s = in.u8();
    switch (s & 3) {
      case 0: return s >> 2;  // 0..63
      case 1: return in.u16();
      case 2: return in.u32();
      default: return in.u64();
    }
  }

  void register_range(uint8_t f) {
    bool pio = f & 4;
    int dev = (f >> 3) % 9;  // 8: no device
    uint64_t base = pick(pio, f & 0x80), size = pick_size();
    if (pio) base &= 0xffff, size &= 0xffffffff;
    std::string name = std::to_string(registrations++);
    pci::IoDevice* d = dev < 8 ? &devs[dev] : nullptr;
    Status s = pio ? bus.register_pio(uint16_t(base), uint32_t(size), d, name)
                   : bus.register_mmio(Gpa(base), size, d, name);
    bool ok = d != nullptr && size != 0 && base + size > base && (!pio || base + size <= 0x10000);
    for (const auto& c : claims) {
      ok = ok && !(c.pio == pio && base < c.base + c.size && c.base < base + size);
    }
    if (s.has_value() != ok) broken(ok ? "a free range was refused" : "an overlapping or invalid range was accepted");
    if (ok) claims.push_back({pio, base, size, dev, name});
  }

  void unregister_range(uint8_t f) {
    bool pio = f & 4;
    int dev = (f >> 3) % 8;
    uint64_t base = pick(pio, f & 0x80);
    if (pio) base &= 0xffff;
    if (f & 0x40) {  // exactly the base of a claim
      std::vector<const Claim*> same;
      for (const auto& c : claims) {
        if (c.pio == pio) same.push_back(&c);
      }
      if (!same.empty()) base = same[base % same.size()]->base;
    }
    bool done = pio ? bus.unregister_pio(uint16_t(base), &devs[dev]) : bus.unregister_mmio(Gpa(base), &devs[dev]);
    auto it = std::find_if(claims.begin(), claims.end(),
                           [&](const Claim& c) { return c.pio == pio && c.base == base && c.dev == dev; });
    if (done != (it != claims.end())) broken(done ? "unregister removed a range it was not given" : "unregister left the named range");
    if (it != claims.end()) claims.erase(it);
  }

  void access(uint8_t f) {
    bool pio = f & 4, is_write = f & 8;
    uint64_t addr = pick(pio, f & 0x80);
    if (pio) addr &= 0xffff;
    size_t len = in.u8() % 9;
    uint64_t value = in.u64();
    uint8_t buf[8];
    std::memcpy(buf, &value, 8);
    const Claim* want = nullptr;
    for (const auto& c : claims) {
      if (c.holds(pio, addr, len)) want = &c;
    }
    std::string owner_want;
    for (const auto& c : claims) {
      if (c.holds(pio, addr, 1)) owner_want = c.name;
    }
    if (bus.owner(pio ? IoBus::Space::kPio : IoBus::Space::kMmio, addr) != owner_want) broken("owner() disagrees with the claims");
    size_t before[8];
    for (int i = 0; i < 8; ++i) before[i] = devs[i].log.size();
    std::optional<Claim> unmapped;
    if (want && want->dev == 7 && is_write) unmapped = *want;
    devs[7].unmap_on_write = unmapped;
    std::span<uint8_t> data(buf, len);
    bool claimed = pio ? (is_write ? bus.pio_write(uint16_t(addr), data) : bus.pio_read(uint16_t(addr), data))
                       : (is_write ? bus.mmio_write(Gpa(addr), data) : bus.mmio_read(Gpa(addr), data));
    if (claimed != (want != nullptr)) broken("dispatch claimed an access the model does not (or the reverse)");
    for (int i = 0; i < 8; ++i) {
      size_t calls = devs[i].log.size() - before[i];
      if (calls != (want && want->dev == i ? 1u : 0u)) broken("an access reached the wrong device");
    }
    if (!want) {
      ++unclaimed;
      for (size_t i = 0; !is_write && i < len; ++i) {
        if (buf[i] != 0xff) broken("an unclaimed read is not all-ones");
      }
    } else {
      const auto& a = devs[want->dev].log.back();
      if (a.write != is_write || a.offset != addr - want->base || a.data.size() != len) broken("the device saw another access");
      for (size_t i = 0; i < len; ++i) {
        uint8_t expect = is_write ? uint8_t(value >> (8 * i)) : Recorder::fill(want->dev, a.offset, i);
        if (a.data[i] != expect || (!is_write && buf[i] != expect)) broken("the bytes of an access changed on the way");
      }
    }
    if (unmapped) {
      claims.erase(std::find_if(claims.begin(), claims.end(), [&](const Claim& c) { return c.name == unmapped->name; }));
    }
    if (bus.unclaimed_accesses() != unclaimed) broken("the unclaimed count is off");
  }

  void step() {
    uint8_t f = in.u8();
    switch (f & 3) {
      case 0: register_range(f); break;
      case 1: unregister_range(f); break;
      default: access(f); break;
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The bus's debug log, formatted (so a bad format argument shows) into a null sink.
  static bool once = [] {
    auto l = std::make_shared<spdlog::logger>("vmm", std::make_shared<spdlog::sinks::null_sink_mt>());
    l->set_level(spdlog::level::trace);
    spdlog::register_logger(l);
    return true;
  }();
  (void)once;
  Bytes in{data, size};
  World world(in);
  for (int n = 0; n < 4096 && !in.empty(); ++n) world.step();
  return 0;
}
