#include "pinless/pci/config_space.h"

#include <bit>

namespace pinless::pci {
namespace {

constexpr uint16_t kCommandWritable = kCommandIo | kCommandMemory | kCommandBusMaster |
                                      (1u << 6) /* parity */ | (1u << 8) /* SERR */ |
                                      kCommandIntxDisable;
// Status: master data parity error, signalled/received target abort, received master
// abort, signalled system error, detected parity error.
constexpr uint16_t kStatusRw1c = 0xf900;
constexpr uint64_t kIoSpaceEnd = 0x10000;

uint16_t bar_offset(uint8_t index) { return uint16_t(kBar0 + 4 * index); }

}  // namespace

PciConfigSpace::PciConfigSpace(const PciIdentity& id) {
  set_u16(kVendorId, id.vendor_id);
  set_u16(kDeviceId, id.device_id);
  data_[kRevisionId] = id.revision;
  data_[kClassCode] = uint8_t(id.class_code);
  data_[kClassCode + 1] = uint8_t(id.class_code >> 8);
  data_[kClassCode + 2] = uint8_t(id.class_code >> 16);
  set_u16(kSubsystemVendorId, id.subsystem_vendor_id);
  set_u16(kSubsystemId, id.subsystem_id);
  data_[kInterruptPin] = id.interrupt_pin;
  wmask_[kCommand] = uint8_t(kCommandWritable);
  wmask_[kCommand + 1] = uint8_t(kCommandWritable >> 8);
  w1c_[kStatus] = uint8_t(kStatusRw1c);
  w1c_[kStatus + 1] = uint8_t(kStatusRw1c >> 8);
  wmask_[kCacheLineSize] = 0xff;
  wmask_[kInterruptLine] = 0xff;
}

Status PciConfigSpace::add_bar(uint8_t index, BarKind kind, uint64_t size, bool prefetchable) {
  auto bad = [&](const char* why) {
    return fail("PCI BAR setup", EINVAL, "BAR " + std::to_string(index), why);
  };
  bool is64 = kind == BarKind::kMem64;
  if (index >= kNumBars || (is64 && index + 1 >= kNumBars)) return bad("BAR index out of range");
  if (bars_[index].present || (is64 && bars_[index + 1].present)) return bad("BAR already in use");
  if (!std::has_single_bit(size)) return bad("BAR size is not a power of two");
  if (kind == BarKind::kIo && (size < 4 || size > 256)) return bad("I/O BARs are 4..256 bytes");
  if (kind != BarKind::kIo && size < 16) return bad("memory BARs are at least 16 bytes");
  if (kind == BarKind::kMem32 && size > (1ull << 31)) return bad("32-bit BAR larger than 2 GiB");
  if (kind == BarKind::kIo && prefetchable) return bad("I/O BARs cannot be prefetchable");

  bars_[index] = Bar{true, false, kind, size, prefetchable};
  uint64_t addr_mask = ~(size - 1);
  uint32_t flags = 0;
  if (kind == BarKind::kIo) {
    flags = 0x1;
    addr_mask &= ~uint64_t(0x3);
  } else {
    flags = (is64 ? 0x4 : 0x0) | (prefetchable ? 0x8 : 0x0);
    addr_mask &= ~uint64_t(0xf);
  }
  set_u32(bar_offset(index), flags);
  uint32_t lo_mask = uint32_t(addr_mask);
  uint8_t lo[4] = {uint8_t(lo_mask), uint8_t(lo_mask >> 8), uint8_t(lo_mask >> 16), uint8_t(lo_mask >> 24)};
  set_write_mask(bar_offset(index), lo);
  if (is64) {
    bars_[index + 1] = Bar{true, true, kind, size, prefetchable};
    uint32_t hi_mask = uint32_t(addr_mask >> 32);
    uint8_t hi[4] = {uint8_t(hi_mask), uint8_t(hi_mask >> 8), uint8_t(hi_mask >> 16), uint8_t(hi_mask >> 24)};
    set_u32(bar_offset(index + 1), 0);
    set_write_mask(bar_offset(index + 1), hi);
  }
  return {};
}

Result<uint16_t> PciConfigSpace::add_capability(uint8_t id, std::span<const uint8_t> body,
                                                std::span<const uint8_t> writable) {
  if (!writable.empty() && writable.size() != body.size()) {
    return fail("PCI capability setup", EINVAL, "write mask size differs from the body");
  }
  uint16_t off = next_cap_;
  if (off + 2 + body.size() > kCapAreaEnd) {
    return fail("PCI capability setup", ENOSPC, "capability " + std::to_string(id),
                "no room left below offset 0x100");
  }
  data_[off] = id;
  data_[off + 1] = 0;  // end of list
  set_bytes(uint16_t(off + 2), body);
  if (!writable.empty()) set_write_mask(uint16_t(off + 2), writable);
  if (last_cap_ == 0) {
    data_[kCapabilitiesPointer] = uint8_t(off);
    data_[kStatus] |= kStatusCapList;
  } else {
    data_[last_cap_ + 1] = uint8_t(off);
  }
  last_cap_ = off;
  next_cap_ = uint16_t((off + 2 + body.size() + 3) & ~size_t(3));
  return off;
}

void PciConfigSpace::set_bytes(uint16_t offset, std::span<const uint8_t> bytes) {
  for (size_t i = 0; i < bytes.size() && offset + i < kConfigSpaceSize; ++i) data_[offset + i] = bytes[i];
}
void PciConfigSpace::set_u16(uint16_t offset, uint16_t v) {
  uint8_t b[2] = {uint8_t(v), uint8_t(v >> 8)};
  set_bytes(offset, b);
}
void PciConfigSpace::set_u32(uint16_t offset, uint32_t v) {
  uint8_t b[4] = {uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)};
  set_bytes(offset, b);
}
void PciConfigSpace::set_write_mask(uint16_t offset, std::span<const uint8_t> mask) {
  for (size_t i = 0; i < mask.size() && offset + i < kConfigSpaceSize; ++i) wmask_[offset + i] = mask[i];
}
void PciConfigSpace::set_rw1c_mask(uint16_t offset, std::span<const uint8_t> mask) {
  for (size_t i = 0; i < mask.size() && offset + i < kConfigSpaceSize; ++i) w1c_[offset + i] = mask[i];
}

Status PciConfigSpace::set_bar_address(uint8_t index, uint64_t address) {
  if (index >= kNumBars || !bars_[index].present || bars_[index].upper) {
    return fail("PCI BAR setup", EINVAL, "BAR " + std::to_string(index), "no such BAR");
  }
  const Bar& b = bars_[index];
  if ((address & (b.size - 1)) != 0) {
    return fail("PCI BAR setup", EINVAL, "BAR " + std::to_string(index), "address not size-aligned");
  }
  if (b.kind != BarKind::kMem64 && address > 0xffffffffull) {
    return fail("PCI BAR setup", EINVAL, "BAR " + std::to_string(index), "address above 4 GiB");
  }
  write(bar_offset(index), 4, uint32_t(address));
  if (b.kind == BarKind::kMem64) write(bar_offset(index + 1), 4, uint32_t(address >> 32));
  return {};
}

bool PciConfigSpace::valid_access(uint16_t offset, uint8_t size) {
  return (size == 1 || size == 2 || size == 4) && offset % size == 0 &&
         uint32_t(offset) + size <= kConfigSpaceSize;
}

uint32_t PciConfigSpace::read(uint16_t offset, uint8_t size) const {
  if (!valid_access(offset, size)) return 0xffffffffu;
  uint32_t v = 0;
  for (uint8_t i = 0; i < size; ++i) v |= uint32_t(data_[offset + i]) << (8 * i);
  return v;
}

void PciConfigSpace::write(uint16_t offset, uint8_t size, uint32_t value) {
  // Guest-controlled offset, size and value: the masks decide what may change.
  if (!valid_access(offset, size)) {
    if (bad_.allow()) logger("dev")->warn("pci: bad config write size {} at {:#x}", size, offset);
    return;
  }
  for (uint8_t i = 0; i < size; ++i) {
    uint8_t v = uint8_t(value >> (8 * i));
    uint8_t& reg = data_[offset + i];
    reg = uint8_t((reg & ~wmask_[offset + i]) | (v & wmask_[offset + i]));
    reg = uint8_t(reg & ~(v & w1c_[offset + i]));
  }
  bool touches_command = offset <= kCommand + 1 && offset + size > kCommand;
  bool touches_bars = offset < bar_offset(kNumBars) && offset + size > kBar0;
  if (touches_command || touches_bars) update_decode();
}

uint32_t PciConfigSpace::dword(uint16_t offset) const { return read(offset, 4); }

uint32_t PciConfigSpace::dword_mask(uint16_t offset) const {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(wmask_[offset + i]) << (8 * i);
  return v;
}

uint64_t PciConfigSpace::bar_address(uint8_t index) const {
  const Bar& b = bars_[index];
  uint32_t lo = dword(bar_offset(index));
  if (b.kind == BarKind::kIo) return lo & ~uint32_t(0x3);
  uint64_t a = lo & ~uint32_t(0xf);
  if (b.kind == BarKind::kMem64) a |= uint64_t(dword(bar_offset(index + 1))) << 32;
  return a;
}

// The guest is sizing the BAR when a dword of it reads back with every writable bit set
// (the all-ones write). No real assignment looks like that: it would be the topmost
// size-aligned slot of the 4 GiB (or 2^64) space.
bool PciConfigSpace::bar_sizing(uint8_t index) const {
  auto all_set = [&](uint16_t off) {
    uint32_t m = dword_mask(off);
    return m != 0 && (dword(off) & m) == m;
  };
  if (all_set(bar_offset(index))) return true;
  return bars_[index].kind == BarKind::kMem64 && all_set(bar_offset(index + 1));
}

std::optional<uint64_t> PciConfigSpace::wanted_decode(uint8_t index) const {
  const Bar& b = bars_[index];
  if (!b.present || b.upper) return std::nullopt;
  uint16_t enable = b.kind == BarKind::kIo ? kCommandIo : kCommandMemory;
  if ((command() & enable) == 0 || bar_sizing(index)) return std::nullopt;
  uint64_t a = bar_address(index);
  if (a == 0) return std::nullopt;
  // Guest-programmed: an I/O BAR beyond the 64 KiB port space cannot be decoded.
  if (b.kind == BarKind::kIo && a + b.size > kIoSpaceEnd) return std::nullopt;
  return a;
}

void PciConfigSpace::update_decode() {
  for (uint8_t i = 0; i < kNumBars; ++i) {
    std::optional<uint64_t> want = wanted_decode(i);
    if (want == decoded_[i]) continue;
    BarMove move{*bar(i), decoded_[i], want};
    decoded_[i] = want;
    if (on_move_) on_move_(move);
  }
}

std::optional<BarInfo> PciConfigSpace::bar(uint8_t index) const {
  if (index >= kNumBars || !bars_[index].present || bars_[index].upper) return std::nullopt;
  const Bar& b = bars_[index];
  return BarInfo{index, b.kind, b.size, b.prefetchable, bar_address(index)};
}

std::vector<BarInfo> PciConfigSpace::bars() const {
  std::vector<BarInfo> out;
  for (uint8_t i = 0; i < kNumBars; ++i) {
    if (auto b = bar(i)) out.push_back(*b);
  }
  return out;
}

std::optional<uint64_t> PciConfigSpace::decoded(uint8_t index) const {
  return index < kNumBars ? decoded_[index] : std::nullopt;
}

std::optional<uint16_t> PciConfigSpace::find_capability(uint8_t id) const {
  return pci::find_capability(read32_from(data_), id);
}

}  // namespace pinless::pci
