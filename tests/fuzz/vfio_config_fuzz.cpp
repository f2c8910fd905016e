// libFuzzer target: a guest programming a passed-through PCI function (vfio/src/vfio_pci_*.cpp
// over pci/src/{config_space,capabilities,msix_table}.cpp). The device is the scripted VFIO
// device of the unit tests (tests/unit/vfio/vfio_pci_rig.h), on an IoBus and a KVM fake that
// refuses overlapping memslots as KVM does; other devices already own COM1, 0xcf8, the ECAM
// window and the IOAPIC, and RAM is memslot 0 at [0, 1 GiB).
// Input: 16 bytes shape the device (see shape(): capabilities MSI/MSI-X/PM/PCIe/vendor, six
// BARs' kind and size, MSI-X table size/BIR/offsets, ROM size, memslots and MSI routing on or
// off), then up to 7 (offset, byte) patches of its real config space; the rest is guest
// operations (see Guest::step(): config reads/writes of any size at any offset, BAR and ROM
// sizing and moves (onto other devices and other BARs too), capability walks and writes,
// MSI/MSI-X control, MMIO/PIO accesses through the bus, MSI-X table entries, reset, shutdown).
// Checked after every operation: no crash, no sanitizer report; a config read fits its size,
// reads all-ones when invalid or after shutdown, 0 above 0xff, and agrees with the byte reads
// it spans; sizing a BAR or the ROM reads back its size mask; the guest walks exactly the
// capabilities the device kept; the other devices keep their ranges and RAM its memslot; every
// range and memslot the device holds lies inside one of its decoded BARs (or the ROM window),
// it releases only what it holds, and nothing is left once it is shut down or destroyed; an
// MSI-X table entry reads back what was written. Built and run by scripts/fuzz.
#include <spdlog/sinks/null_sink.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>

#include "fuzz_input.h"
#include "unit/vfio/vfio_pci_rig.h"

using namespace pinless;
using namespace pinless::testing;
using namespace pinless::testing::vfio_pci;
using pinless::vmm::MsiRouter;

namespace {

using fuzz::Bytes;

[[noreturn]] void broken(const char* why) { fuzz::broken("vfio_config", why); }

constexpr uint8_t kSizes[8] = {1, 2, 4, 4, 1, 2, 3, 8};  // mostly valid, some not
constexpr uint64_t kRamSize = 1ull << 30;
constexpr uint32_t kFirstSlot = 32;

uint32_t ones(uint8_t size) { return size >= 4 ? 0xffffffffu : (1u << (8 * size)) - 1; }

// Another device on the bus, whose range must survive whatever the guest does with the BARs.
struct Other final : pci::IoDevice {
  void read(uint64_t, std::span<uint8_t> data) override { std::memset(data.data(), 0x5a, data.size()); }
  void write(uint64_t, std::span<const uint8_t>) override {}
};
struct OtherRange {
  bool pio;
  uint64_t base, size;
  const char* name;
};
constexpr OtherRange kOthers[] = {{true, 0x3f8, 8, "com1"},
                                  {true, 0xcf8, 8, "pci-io"},
                                  {false, 0xb0000000, 0x10000000, "ecam"},
                                  {false, 0xfec00000, 0x1000, "ioapic"}};

// The device's view of the bus: forwards to the IoBus and keeps what the device holds.
struct Registry final : pci::IoRegistry {
  explicit Registry(vmm::IoBus& b) : bus(b) {}
  Status register_pio(uint16_t base, uint32_t size, pci::IoDevice* dev, std::string name) override {
    Status s = bus.register_pio(base, size, dev, std::move(name));
    if (s) held[{true, base}] = size;
    return s;
  }
  Status register_mmio(Gpa base, uint64_t size, pci::IoDevice* dev, std::string name) override {
    Status s = bus.register_mmio(base, size, dev, std::move(name));
    if (s) held[{false, base.value()}] = size;
    return s;
  }
  bool unregister_pio(uint16_t base, const pci::IoDevice* dev) override { return release(true, base, dev); }
  bool unregister_mmio(Gpa base, const pci::IoDevice* dev) override { return release(false, base.value(), dev); }
  bool release(bool pio, uint64_t base, const pci::IoDevice* dev) {
    bool done = pio ? bus.unregister_pio(uint16_t(base), dev) : bus.unregister_mmio(Gpa(base), dev);
    if (!done || held.erase({pio, base}) == 0) broken("the device released a range it does not hold");
    return done;
  }
  vmm::IoBus& bus;
  std::map<std::pair<bool, uint64_t>, uint64_t> held;  // (pio, base) -> size
};

// KVM_SET_USER_MEMORY_REGION as KVM checks it: page-aligned, no overlap with another slot.
void script_memslots(Rig& rig) {
  rig.slots[0] = {0, 0, 0, kRamSize, 0};
  rig.sys.on_ioctl(KVM_SET_USER_MEMORY_REGION, [&rig](int, unsigned long, void* a) {
    auto* mr = static_cast<kvm_userspace_memory_region*>(a);
    auto it = rig.slots.find(mr->slot);
    if (mr->memory_size == 0) {
      if (mr->slot < kFirstSlot || it == rig.slots.end()) broken("the device removed a memslot it does not hold");
      rig.slots.erase(it);
      return 0;
    }
    if (it != rig.slots.end()) broken("the device set a memslot it already holds");
    if (mr->guest_phys_addr % 4096 != 0 || mr->memory_size % 4096 != 0) return -EINVAL;
    for (const auto& [slot, r] : rig.slots) {
      if (mr->guest_phys_addr < r.guest_phys_addr + r.memory_size &&
          r.guest_phys_addr < mr->guest_phys_addr + mr->memory_size) {
        return -EEXIST;
      }
    }
    rig.slots[mr->slot] = *mr;
    return 0;
  });
}

std::vector<uint8_t> pattern(uint64_t size, uint8_t seed) {
  std::vector<uint8_t> v(std::min<uint64_t>(size, 512));
  for (size_t i = 0; i < v.size(); ++i) v[i] = uint8_t(seed + i * 7);
  return v;
}

struct Shape {
  bool memslots = true, router = true;
};

// The fake device from the first 16 bytes of the input:
//   [0] capabilities: 1 MSI, 2 MSI-X, 4 PM, 8 PCIe (hidden), 0x10 vendor (hidden), 0x20 ROM;
//       0x40 no memslots (every BAR trapped), 0x80 no MSI routing
//   [1..6] BAR i: kind (bits 0-1: none, I/O, 32-bit, 64-bit memory), size exponent (bits 2-5),
//       prefetchable (6), region a quarter smaller than the BAR (7)
//   [7] MSI: 64-bit (0), per-vector mask (1), Multiple Message Capable (2-4), irq count (5-7)
//   [8] MSI-X table BIR (0-2), PBA BIR (3-5); BAR0 sparse-mmap areas (6), overlapping (7)
//   [9,10] MSI-X table size field; [11] MSI-X irq count; [12] table offset / 0x100;
//   [13] PBA offset / 0x100; [14] ROM size exponent (0-4), a third smaller (5)
//   [15] number of (offset, byte) patches of the real config space that follow (0-7)
Shape shape(FakeVfioPci& pci, Bytes& in) {
  std::fill(pci.config.begin() + 0x10, pci.config.end(), 0);
  std::fill(pci.regions.begin(), pci.regions.begin() + 7, FakeVfioPci::Region{});
  const uint8_t caps = in.u8();
  constexpr uint32_t kRw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
  for (uint8_t i = 0; i < 6; ++i) {
    uint8_t b = in.u8(), kind = b & 3, e = (b >> 2) & 0xf;
    bool upper = i > 0 && pci.regions[i - 1].size != 0 && (pci.config[0x10 + 4 * (i - 1)] & 7) == 4;
    if (kind == 0 || upper) continue;
    uint64_t size = kind == 1 ? uint64_t(1) << (2 + e % 7) : uint64_t(1) << (4 + e * 4 / 3);
    if (b & 0x80) size -= size / 4;
    uint32_t bits = kind == 1 ? 0x1 : kind == 3 ? 0x4 : 0x0;
    if (kind != 1 && (b & 0x40)) bits |= 0x8;
    pci.put32(0x10 + 4 * i, bits);
    pci.regions[i] = {size, kind == 1 ? kRw : kRw | VFIO_REGION_INFO_FLAG_MMAP, {}, pattern(size, i)};
  }
  const uint8_t msi = in.u8(), bir = in.u8();
  const uint16_t table_size = in.u16() & 0x7ff;
  const uint8_t msix_irqs = in.u8(), table_off = in.u8(), pba_off = in.u8(), rom = in.u8();
  if ((bir & 0x40) && pci.regions[0].size >= 0x4000) {
    uint64_t s = pci.regions[0].size;
    pci.regions[0].sparse = {{0, s / 2}, {s - s / 4, s / 4}};
    if (bir & 0x80) pci.regions[0].sparse.push_back({s / 4, s / 2});
  }
  // Capabilities at fixed offsets, linked in address order.
  struct Cap {
    bool on;
    uint8_t off, id;
  };
  const Cap list[] = {{(caps & 1) != 0, 0x40, 0x05}, {(caps & 2) != 0, 0x58, 0x11}, {(caps & 4) != 0, 0x64, 0x01},
                      {(caps & 8) != 0, 0x6c, 0x10}, {(caps & 0x10) != 0, 0xa8, 0x09}};
  uint8_t* link = &pci.config[0x34];
  for (const auto& c : list) {
    if (!c.on) continue;
    *link = c.off;
    pci.config[c.off] = c.id;
    link = &pci.config[c.off + 1];
  }
  pci.put16(0x06, pci.config[0x34] != 0 ? 0x0010 : 0);
  pci.put16(0x42, uint16_t((msi & 1) << 7 | (msi & 2) << 7 | ((msi >> 2) & 7) << 1));
  pci.put16(0x5a, table_size);
  pci.put32(0x5c, uint32_t(table_off) << 8 | (bir & 7));
  pci.put32(0x60, uint32_t(pba_off) << 8 | ((bir >> 3) & 7));
  pci.config[0xaa] = 8;  // the vendor capability's length
  for (int o = 0xb0; o < 0x100; ++o) pci.config[o] = uint8_t(o * 3);  // device-specific, read live
  constexpr uint32_t kMsiIrqs[8] = {0, 1, 1, 2, 4, 8, 32, 3};
  pci.irq_counts = {1, kMsiIrqs[msi >> 5], uint32_t(msix_irqs % 65)};
  if (caps & 0x20) {
    uint64_t size = uint64_t(1) << (rom & 0x1f);
    if (rom & 0x20) size -= size / 3;
    auto& r = pci.regions[vfio::VfioPciDevice::kRomRegion];
    r = {size, VFIO_REGION_INFO_FLAG_READ, {}, pattern(size, 0x55)};
  }
  for (int n = in.u8() & 7; n > 0; --n) {
    uint8_t off = in.u8();
    pci.config[off] = in.u8();
  }
  return {(caps & 0x40) == 0, (caps & 0x80) == 0};
}

// The guest: one operation per step, then the checks.
struct Guest {
  vfio::VfioPciDevice& d;
  vmm::IoBus& bus;
  Registry& reg;
  Rig& rig;
  Bytes& in;
  bool routed;  // MSI routing present: without it the table is not emulated (config-only tests)
  bool shut = false;

  uint32_t read(uint16_t off, uint8_t size) {
    uint32_t v = d.config_read(off, size);
    bool valid = pci::PciConfigSpace::valid_access(off, size);
    if (size <= 4 && v > ones(size)) broken("a config read is wider than its size");
    if ((shut || !valid) && v != ones(size)) broken("an invalid or post-shutdown config read is not all-ones");
    if (!shut && valid && off >= 0x100 && v != 0) broken("extended config space is not hidden");
    return v;
  }

  std::optional<pci::BarInfo> bar(uint8_t i) const {
    for (const auto& b : d.bars()) {
      if (b.index == i) return b;
    }
    return std::nullopt;
  }
  bool is64(uint8_t i) const { return bar(i) && bar(i)->kind == pci::BarKind::kMem64; }
  uint16_t bar_offset(uint8_t i) const { return i == 6 ? pci::kRomBar : uint16_t(pci::kBar0 + 4 * i); }

  // What BAR i (6: the ROM) reads after the all-ones write.
  uint32_t sized(uint8_t i) const {
    if (i == 6) return d.rom_size() ? (uint32_t(~(d.rom_size() - 1)) & 0xfffff800u) | 1u : 0;
    for (const auto& b : d.bars()) {
      uint64_t mask = ~(b.size - 1);
      if (b.index == i && b.kind == pci::BarKind::kIo) return (uint32_t(mask) & ~3u) | 1u;
      if (b.index == i) return (uint32_t(mask) & ~0xfu) | (is64(i) ? 4u : 0u) | (b.prefetchable ? 8u : 0u);
      if (b.kind == pci::BarKind::kMem64 && b.index + 1 == i) return uint32_t(mask >> 32);
    }
    return 0;
  }

  uint64_t pick_address(uint8_t i, uint8_t mode) {
    switch (mode & 3) {
      case 0: {
        uint64_t lo = in.u32();
        return (mode & 4) ? lo | uint64_t(in.u32()) << 32 : lo;
      }
      case 1: {  // onto (or near) another device
        const OtherRange& o = kOthers[in.u8() % std::size(kOthers)];
        return o.base + uint64_t(int64_t(int16_t(in.u16())) * 16);
      }
      case 2: {  // onto (or near) another BAR of this device, or its ROM
        uint8_t j = in.u8() % 7;
        uint64_t at = j == 6 ? d.config_read(pci::kRomBar, 4) & 0xfffff800u : bar(j) ? bar(j)->address : 0;
        return at + uint64_t(in.u16()) * 16;
      }
      default:
        return bar(i) && bar(i)->kind == pci::BarKind::kIo ? 0x1000 + in.u16() % 0xf000
                                                           : 0xc0000000 + uint64_t(in.u16()) * 0x1000;
    }
  }

  // The guest's walk of the capability list: (offset, id) pairs.
  std::vector<std::pair<uint8_t, uint8_t>> walk() {
    std::vector<std::pair<uint8_t, uint8_t>> caps;
    if ((read(pci::kStatus, 2) & pci::kStatusCapList) == 0) return caps;
    uint8_t off = uint8_t(read(pci::kCapabilitiesPointer, 1) & 0xfc);
    while (off >= 0x40 && caps.size() < 48) {
      uint32_t header = read(off, 2);
      caps.push_back({off, uint8_t(header)});
      off = uint8_t((header >> 8) & 0xfc);
    }
    return caps;
  }

  void step() {
    switch (in.u8() % 13) {
      case 0: {  // config read; a wider read agrees with the byte reads it spans
        uint8_t lo = in.u8(), sz = in.u8(), size = kSizes[sz & 7];
        uint16_t off = uint16_t(lo | (sz >> 3) << 8);
        uint32_t v = read(off, size), bytes = 0;
        if (size == 1 || !pci::PciConfigSpace::valid_access(off, size)) break;
        for (uint8_t i = 0; i < size; ++i) bytes |= read(uint16_t(off + i), 1) << (8 * i);
        if (v != bytes) broken("a config read differs from the byte reads it spans");
        break;
      }
      case 1: {  // config write
        uint8_t lo = in.u8(), sz = in.u8();
        d.config_write(uint16_t(lo | (sz >> 3) << 8), kSizes[sz & 7], in.u32());
        break;
      }
      case 2: {  // BAR or ROM sizing, then maybe the old value back
        uint8_t b = in.u8(), i = (b & 7) % 7;
        uint32_t old = d.config_read(bar_offset(i), 4);
        d.config_write(bar_offset(i), 4, 0xffffffff);
        if (read(bar_offset(i), 4) != (shut ? 0xffffffffu : sized(i))) broken("BAR sizing reads back the wrong mask");
        if (b & 0x80) d.config_write(bar_offset(i), 4, old);
        break;
      }
      case 3: {  // BAR or ROM move (bit 5: the ROM enable bit)
        uint8_t b = in.u8(), i = (b & 7) % 7;
        uint64_t at = pick_address(i, b >> 3);
        d.config_write(bar_offset(i), 4, uint32_t(at) | (i == 6 ? (b >> 5) & 1 : 0));
        if (i < 6 && is64(i)) d.config_write(bar_offset(i + 1), 4, uint32_t(at >> 32));
        break;
      }
      case 4:  // command register: decode on and off
        d.config_write(pci::kCommand, 2, in.u16());
        break;
      case 5: {  // capability walk: exactly the kept capabilities, in order
        auto caps = walk();
        if (shut) break;
        const auto& kept = d.kept_capabilities();
        bool same = caps.size() == kept.size();
        for (size_t k = 0; same && k < caps.size(); ++k) {
          same = caps[k].first == kept[k].offset && caps[k].second == kept[k].id;
        }
        if (!same) broken("the guest's capability walk differs from the kept capabilities");
        break;
      }
      case 6: {  // a write into a capability the guest found
        auto caps = walk();
        uint8_t k = in.u8(), rel = in.u8(), size = kSizes[in.u8() & 7];
        uint16_t base = caps.empty() ? 0x40 : caps[k % caps.size()].first;
        d.config_write(uint16_t(base + rel % 32), size, in.u32());
        break;
      }
      case 7: {  // MSI: control, address, data, mask bits
        uint8_t f = in.u8();
        uint32_t v = in.u32();
        if (!d.msi()) break;
        const vfio::MsiCapInfo m = *d.msi();
        const uint16_t offs[4] = {uint16_t(m.offset + 2), uint16_t(m.offset + 4), uint16_t(m.offset + m.data_offset()),
                                  uint16_t(m.offset + m.mask_offset())};
        const uint8_t sizes[4] = {2, 4, 2, 4};
        d.config_write(offs[f & 3], sizes[f & 3], v);
        break;
      }
      case 8: {  // MSI-X Message Control: enable, function mask (as a word or its high byte)
        uint8_t f = in.u8();
        uint16_t v = in.u16();
        if (!d.msix()) break;
        uint16_t ctl = uint16_t(d.msix()->offset + 2);
        (f & 1) ? d.config_write(uint16_t(ctl + 1), 1, v >> 8) : d.config_write(ctl, 2, v);
        break;
      }
      case 9:
        access();
        break;
      case 10:
        program_vector();
        break;
      case 11:  // what a guest does before a device reset: everything off and unassigned
        d.config_write(pci::kCommand, 2, 0);
        if (d.msi()) d.config_write(uint16_t(d.msi()->offset + 2), 2, 0);
        if (d.msix()) d.config_write(uint16_t(d.msix()->offset + 2), 2, 0);
        for (uint8_t i = 0; i < 7; ++i) d.config_write(bar_offset(i), 4, 0);
        if (!reg.held.empty() || rig.slots.size() != 1) broken("ranges stay claimed with decoding off");
        break;
      default:
        d.shutdown();
        shut = true;
        break;
    }
    check();
  }

  // An MMIO or PIO access through the bus at one of the device's BARs (plain, at the MSI-X
  // table or PBA, far off), its ROM, or anywhere.
  void access() {
    uint8_t t = in.u8(), s = in.u8(), len = uint8_t(1 + s % 8);
    uint64_t value = in.u64(), addr = 0;
    bool pio = false;
    if (t % 8 < 6) {
      auto b = bar(t % 8);
      auto at = d.config().decoded(t % 8);
      uint64_t base = at ? *at : b ? b->address : 0;
      pio = b && b->kind == pci::BarKind::kIo;
      auto x = d.msix();
      switch ((t >> 3) & 3) {
        case 0: addr = base + in.u16(); break;
        case 1: addr = base + (x ? x->table_offset + in.u16() % (x->table_bytes() + 16) : in.u16()); break;
        case 2: addr = base + (x ? x->pba_offset : 0) + in.u8(); break;
        default: addr = base + in.u32(); break;
      }
    } else if (t % 8 == 6) {
      addr = d.rom_at().value_or(0) + in.u16();
    } else {
      addr = in.u64();
      pio = (t & 0x80) != 0;
    }
    uint8_t buf[8];
    std::memcpy(buf, &value, 8);
    std::span<uint8_t> data(buf, len);
    if (pio) {
      (s & 0x80) ? bus.pio_write(uint16_t(addr), data) : bus.pio_read(uint16_t(addr), data);
    } else {
      (s & 0x80) ? bus.mmio_write(Gpa(addr), data) : bus.mmio_read(Gpa(addr), data);
    }
  }

  // A dword of an MSI-X table entry written through the bus reads back (the vector control
  // dword: its mask bit) whenever the table's BAR trap has the address and MSI is routed.
  void program_vector() {
    uint16_t v = in.u16();
    uint8_t k = in.u8() % 4;
    uint32_t value = in.u32();
    if (!d.msix()) return;
    const vfio::MsixCapInfo x = *d.msix();
    auto at = d.config().decoded(x.table_bar);
    if (!at) return;
    Gpa a(*at + x.table_offset + 16 * (v % x.vectors) + 4 * k);
    bool ours = bus.owner(vmm::IoBus::Space::kMmio, a.value()).find(fmt::format("BAR{}+", x.table_bar)) !=
                std::string::npos;
    uint32_t back = 0;
    bus.mmio_write(a, std::span(reinterpret_cast<const uint8_t*>(&value), 4));
    bus.mmio_read(a, std::span(reinterpret_cast<uint8_t*>(&back), 4));
    if (ours && routed && !shut && back != (k == 3 ? value & 1 : value)) broken("an MSI-X table entry does not read back");
  }

  // Inside a decoded BAR of the right space, or the decoded ROM.
  bool inside(bool pio, uint64_t base, uint64_t size) const {
    auto within = [&](uint64_t at, uint64_t len) { return base >= at && size <= len && base - at <= len - size; };
    for (const auto& b : d.bars()) {
      auto at = d.config().decoded(b.index);
      if (at && (b.kind == pci::BarKind::kIo) == pio && within(*at, b.size)) return true;
    }
    return !pio && d.rom_at() && within(*d.rom_at(), d.rom_size());
  }

  void check() const {
    for (const auto& o : kOthers) {
      auto space = o.pio ? vmm::IoBus::Space::kPio : vmm::IoBus::Space::kMmio;
      if (bus.owner(space, o.base) != o.name) broken("another device lost its range");
    }
    for (const auto& [key, size] : reg.held) {
      if (shut || !inside(key.first, key.second, size)) broken("a range is claimed outside the decoded BARs");
    }
    for (const auto& [slot, r] : rig.slots) {
      if (slot == 0 ? r.guest_phys_addr != 0 || r.memory_size != kRamSize
                    : shut || !inside(false, r.guest_phys_addr, r.memory_size)) {
        broken("a memslot is outside the decoded BARs");
      }
    }
  }
};

// Logs at every level, formatted (so a bad format argument shows) into a null sink.
void quiet_logs() {
  for (const char* name : {"dev", "dma", "iommu", "kvm", "vfio", "vmm"}) {
    auto l = std::make_shared<spdlog::logger>(name, std::make_shared<spdlog::sinks::null_sink_mt>());
    l->set_level(spdlog::level::trace);
    spdlog::register_logger(l);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool once = (quiet_logs(), true);
  (void)once;
  Bytes in{data, size};
  Rig rig;
  Shape sh = shape(rig.pci, in);
  script_memslots(rig);
  {
    auto ctx = iommu::Iommufd::open(rig.sys).value();
    auto ioas = iommu::IommufdBackend::create(*ctx).value();
    auto kvm = vmm::Kvm::open(rig.sys).value();
    auto vm = vmm::Vm::create(kvm).value();
    vmm::IoBus bus;
    Other other;
    for (const auto& o : kOthers) {
      Status s = o.pio ? bus.register_pio(uint16_t(o.base), uint32_t(o.size), &other, o.name)
                       : bus.register_mmio(Gpa(o.base), o.size, &other, o.name);
      if (!s) broken("setup: another device's range");
    }
    Registry reg(bus);
    MsiRouter router(rig.sys, vm.fd());
    auto dev = vfio::VfioPciDevice::create(rig.sys, open_dev(rig, *ioas),
                                           {sh.memslots ? &vm : nullptr, &reg, sh.router ? &router : nullptr, kFirstSlot});
    if (dev) {
      Guest guest{**dev, bus, reg, rig, in, sh.router};
      for (int n = 0; n < 4096 && !in.empty(); ++n) guest.step();
      dev->reset();
    }
    if (!reg.held.empty() || rig.slots.size() != 1) broken("ranges or memslots outlive the device");
  }
  if (rig.sys.live_mappings() != 0) broken("BAR mappings outlive the device");
  return 0;
}
