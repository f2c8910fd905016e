#include "pinless/vfio/pci_caps.h"

#include <algorithm>
#include <bitset>

namespace pinless::vfio {
namespace {
uint16_t u16(std::span<const uint8_t> c, size_t off) {
  return off + 1 < c.size() ? uint16_t(c[off] | c[off + 1] << 8) : 0xffff;
}
uint32_t u32(std::span<const uint8_t> c, size_t off) {
  return off + 3 < c.size() ? uint32_t(c[off] | c[off + 1] << 8 | c[off + 2] << 16 | uint32_t(c[off + 3]) << 24)
                            : 0xffffffff;
}
}  // namespace

MsiCapInfo decode_msi(std::span<const uint8_t> config, uint8_t offset) {
  MsiCapInfo m;
  m.offset = offset;
  uint16_t control = u16(config, offset + 2u);
  m.is64 = (control & (1u << 7)) != 0;
  m.per_vector_mask = (control & (1u << 8)) != 0;
  m.max_vectors_log2 = uint8_t(std::min((control >> 1) & 7, 5));
  return m;
}

MsixCapInfo decode_msix(std::span<const uint8_t> config, uint8_t offset) {
  MsixCapInfo m;
  m.offset = offset;
  m.vectors = uint16_t((u16(config, offset + 2u) & 0x7ff) + 1);
  uint32_t table = u32(config, offset + 4u), pba = u32(config, offset + 8u);
  m.table_bar = uint8_t(table & 7);
  m.table_offset = table & ~7u;
  m.pba_bar = uint8_t(pba & 7);
  m.pba_offset = pba & ~7u;
  return m;
}

uint8_t capability_length(std::span<const uint8_t> config, uint8_t id, uint8_t offset) {
  switch (id) {
    case 0x01: return 8;   // power management
    case 0x05: {           // MSI
      MsiCapInfo m = decode_msi(config, offset);
      return uint8_t((m.is64 ? 14 : 10) + (m.per_vector_mask ? 10 : 0));
    }
    case 0x11: return 12;  // MSI-X
    case 0x10: return 60;  // PCI Express (v2)
    case 0x09: return offset + 2u < config.size() ? config[offset + 2u] : 0;  // vendor: length byte
    default: return 0;
  }
}

std::vector<PciCap> walk_capabilities(std::span<const uint8_t> config) {
  std::vector<PciCap> caps;
  if (config.size() < 256 || (u16(config, 0x06) & (1u << 4)) == 0) return caps;
  std::bitset<256> seen;
  uint8_t off = config[0x34] & 0xfc;
  while (off != 0 && caps.size() < 48) {
    if (off < 0x40 || off > 0xfc || seen.test(off)) break;
    seen.set(off);
    uint8_t id = config[off];
    uint8_t len = capability_length(config, id, off);
    if (len == 0 || off + len > 256) len = 2;
    caps.push_back({id, off, len});
    off = config[off + 1u] & 0xfc;
  }
  // Unknown lengths: up to the next capability in address order (or 2 bytes).
  std::vector<PciCap> sorted = caps;
  std::sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.offset < b.offset; });
  for (auto& c : caps) {
    if (capability_length(config, c.id, c.offset) != 0) continue;
    for (const auto& s : sorted) {
      if (s.offset > c.offset) {
        c.length = uint8_t(s.offset - c.offset);
        break;
      }
    }
  }
  return caps;
}

BarBits decode_bar(std::span<const uint8_t> config, uint8_t index) {
  if (index >= 6) return {};
  uint32_t v = u32(config, 0x10u + index * 4u);
  if (v & 1) return {BarType::kIo, false};
  bool pf = (v & 8) != 0;
  return {((v >> 1) & 3) == 2 ? BarType::kMem64 : BarType::kMem32, pf};
}

}  // namespace pinless::vfio
