#include "pinless/vfio/pci_caps.h"

#include <algorithm>

#include "pinless/pci/capabilities.h"

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
    case pci::kCapPm: return 8;
    case pci::kCapMsi: return decode_msi(config, offset).length();
    case pci::kCapMsix: return 12;
    case pci::kCapPcie: return 60;  // v2
    case pci::kCapVendor: return offset + 2u < config.size() ? config[offset + 2u] : 0;  // its length byte
    default: return 0;
  }
}

std::vector<PciCap> walk_capabilities(std::span<const uint8_t> config) {
  std::vector<PciCap> caps;
  for (const auto& c : pci::walk_capabilities(pci::read32_from(config))) {
    auto id = uint8_t(c.id), off = uint8_t(c.offset);
    uint8_t len = capability_length(config, id, off);
    if (len == 0 || off + len > pci::kCapAreaEnd) len = 2;
    caps.push_back({id, off, len});
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
