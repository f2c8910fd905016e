#include "pinless/pci/msix_table.h"

#include <algorithm>

#include "pinless/pci/config_space.h"

namespace pinless::pci {
namespace {

constexpr uint32_t kVectorMaskBit = 1u;

uint64_t load_le(std::span<const uint8_t> data) {
  uint64_t v = 0;
  for (size_t i = 0; i < data.size() && i < 8; ++i) v |= uint64_t(data[i]) << (8 * i);
  return v;
}

void store_le(std::span<uint8_t> data, uint64_t v) {
  for (size_t i = 0; i < data.size(); ++i) data[i] = i < 8 ? uint8_t(v >> (8 * i)) : 0xff;
}

}  // namespace

Result<MsixTable> MsixTable::create(uint16_t vectors, ChangeFn on_change) {
  if (vectors == 0 || vectors > kMaxVectors) {
    return fail("MSI-X table", EINVAL, std::to_string(vectors) + " vectors", "must be 1..2048");
  }
  return MsixTable(vectors, std::move(on_change));
}

MsixTable::MsixTable(uint16_t vectors, ChangeFn on_change)
    : entries_(vectors), pba_((vectors + 63) / 64, 0), on_change_(std::move(on_change)) {}

MsixTable::MsixTable(MsixTable&& o) noexcept
    : entries_(std::move(o.entries_)),
      pba_(std::move(o.pba_)),
      enabled_(o.enabled_),
      function_masked_(o.function_masked_),
      on_change_(std::move(o.on_change_)) {}

bool MsixTable::valid(uint64_t offset, size_t size, uint64_t limit) {
  return (size == 4 || size == 8) && offset % size == 0 && offset < limit && size <= limit - offset;
}

bool MsixTable::masked_locked(uint16_t vector) const {
  return !enabled_ || function_masked_ || entries_[vector].masked;
}

template <typename F>
void MsixTable::changing(uint16_t first, uint16_t last, F&& change) {
  struct Seen {
    MsiMessage msg;
    bool masked;
  };
  std::vector<Seen> before;
  for (uint16_t v = first; v <= last; ++v) {
    before.push_back({{entries_[v].address, entries_[v].data, {}}, masked_locked(v)});
  }
  change();
  if (!on_change_) return;
  for (uint16_t v = first; v <= last; ++v) {
    MsiMessage msg{entries_[v].address, entries_[v].data, {}};
    bool m = masked_locked(v);
    const Seen& s = before[v - first];
    // A masked vector's message does not matter until it is unmasked: report message
    // changes only while unmasked, mask changes always.
    if (m != s.masked || (!m && !(msg == s.msg))) on_change_(v, msg, m);
  }
}

void MsixTable::table_read(uint64_t offset, std::span<uint8_t> data) const {
  std::lock_guard lock(mu_);
  // Guest-controlled offset and size.
  if (!valid(offset, data.size(), table_bytes())) {
    if (bad_.allow()) logger("dev")->warn("msix: bad table read of {} bytes at {:#x}", data.size(), offset);
    std::fill(data.begin(), data.end(), 0xff);
    return;
  }
  const Entry& e = entries_[offset / kEntrySize];
  uint32_t dwords[4] = {uint32_t(e.address), uint32_t(e.address >> 32), e.data,
                        e.masked ? kVectorMaskBit : 0};
  size_t i = (offset % kEntrySize) / 4;
  uint64_t v = dwords[i];
  if (data.size() == 8) v |= uint64_t(dwords[i + 1]) << 32;
  store_le(data, v);
}

void MsixTable::table_write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  // Guest-controlled offset, size and value.
  if (!valid(offset, data.size(), table_bytes())) {
    if (bad_.allow()) logger("dev")->warn("msix: bad table write of {} bytes at {:#x}", data.size(), offset);
    return;
  }
  uint16_t vector = uint16_t(offset / kEntrySize);
  changing(vector, vector, [&] {
    Entry& e = entries_[vector];
    uint64_t v = load_le(data);
    size_t first = (offset % kEntrySize) / 4;
    for (size_t i = first; i < first + data.size() / 4; ++i) {
      uint32_t dw = uint32_t(v >> (32 * (i - first)));
      switch (i) {
        case 0: e.address = (e.address & ~0xffffffffull) | dw; break;
        case 1: e.address = (e.address & 0xffffffffull) | (uint64_t(dw) << 32); break;
        case 2: e.data = dw; break;
        case 3: e.masked = (dw & kVectorMaskBit) != 0; break;  // other bits reserved
      }
    }
  });
}

void MsixTable::pba_read(uint64_t offset, std::span<uint8_t> data) const {
  std::lock_guard lock(mu_);
  if (!valid(offset, data.size(), pba_bytes())) {
    std::fill(data.begin(), data.end(), 0xff);
    return;
  }
  uint64_t word = pba_[offset / 8];
  store_le(data, data.size() == 8 ? word : word >> (8 * (offset % 8)));
}

void MsixTable::pba_write(uint64_t offset, std::span<const uint8_t> data) {
  if (bad_.allow()) logger("dev")->warn("msix: write of {} bytes to the read-only PBA at {:#x} ignored", data.size(), offset);
}

void MsixTable::set_control(uint16_t message_control) {
  std::lock_guard lock(mu_);
  changing(0, uint16_t(entries_.size() - 1), [&] {
    enabled_ = (message_control & kControlEnable) != 0;
    function_masked_ = (message_control & kControlFunctionMask) != 0;
  });
}

bool MsixTable::enabled() const {
  std::lock_guard lock(mu_);
  return enabled_;
}

bool MsixTable::function_masked() const {
  std::lock_guard lock(mu_);
  return function_masked_;
}

MsixTable::Entry MsixTable::entry(uint16_t vector) const {
  std::lock_guard lock(mu_);
  return vector < entries_.size() ? entries_[vector] : Entry{};
}

bool MsixTable::masked(uint16_t vector) const {
  std::lock_guard lock(mu_);
  return vector >= entries_.size() || masked_locked(vector);
}

void MsixTable::set_pending(uint16_t vector, bool pending) {
  std::lock_guard lock(mu_);
  if (vector >= entries_.size()) return;
  uint64_t bit = 1ull << (vector % 64);
  if (pending) {
    pba_[vector / 64] |= bit;
  } else {
    pba_[vector / 64] &= ~bit;
  }
}

bool MsixTable::pending(uint16_t vector) const {
  std::lock_guard lock(mu_);
  return vector < entries_.size() && (pba_[vector / 64] >> (vector % 64)) & 1;
}

Result<uint16_t> add_msix_capability(PciConfigSpace& config, uint16_t vectors, uint8_t table_bar,
                                     uint32_t table_offset, uint8_t pba_bar, uint32_t pba_offset) {
  if (vectors == 0 || vectors > MsixTable::kMaxVectors || table_bar >= kNumBars ||
      pba_bar >= kNumBars || (table_offset & 7) != 0 || (pba_offset & 7) != 0) {
    return fail("MSI-X capability", EINVAL, std::to_string(vectors) + " vectors",
                "1..2048 vectors, BAR 0..5, 8-byte aligned offsets");
  }
  uint16_t control = uint16_t(vectors - 1);
  uint32_t table = table_offset | table_bar;
  uint32_t pba = pba_offset | pba_bar;
  const uint8_t body[10] = {uint8_t(control), uint8_t(control >> 8),
                            uint8_t(table), uint8_t(table >> 8), uint8_t(table >> 16), uint8_t(table >> 24),
                            uint8_t(pba), uint8_t(pba >> 8), uint8_t(pba >> 16), uint8_t(pba >> 24)};
  // Only Message Control bits 14 (function mask) and 15 (enable) are writable.
  const uint8_t writable[10] = {0x00, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0};
  return config.add_capability(kCapMsix, body, writable);
}

}  // namespace pinless::pci
