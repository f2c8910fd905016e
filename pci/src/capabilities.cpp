#include "pinless/pci/capabilities.h"

#include <bitset>

#include "pinless/pci/pci_device.h"

namespace pinless::pci {
namespace {

constexpr uint32_t kAbsent = 0xffffffffu;
constexpr uint8_t kAbsentCapId = 0xff;  // what an unreadable standard header's id reads as

std::optional<uint16_t> first_with(const std::vector<CapEntry>& caps, uint16_t id) {
  for (const auto& c : caps) {
    if (c.id == id) return c.offset;
  }
  return std::nullopt;
}

}  // namespace

ConfigRead32 read32_from(std::span<const uint8_t> config) {
  return [config](uint16_t offset) -> uint32_t {
    if (size_t(offset) + 4 > config.size()) return kAbsent;
    return uint32_t(config[offset]) | uint32_t(config[offset + 1u]) << 8 | uint32_t(config[offset + 2u]) << 16 |
           uint32_t(config[offset + 3u]) << 24;
  };
}

std::vector<CapEntry> walk_capabilities(const ConfigRead32& read32) {
  std::vector<CapEntry> caps;
  uint16_t status = uint16_t(read32(kCommand) >> 16);
  if ((status & kStatusCapList) == 0) return caps;
  // Pointers are dword aligned; the low two bits are reserved and ignored (as Linux does).
  uint16_t off = uint16_t(read32(kCapabilitiesPointer) & 0xfc);
  // One bit per dword of the area: a revisit is a loop, and it also bounds the walk to the
  // 48 entries the area can hold.
  std::bitset<kCapAreaEnd / 4> seen;
  while (off >= kCapAreaStart && off < kCapAreaEnd && !seen.test(off / 4)) {
    seen.set(off / 4);
    uint32_t header = read32(off);
    uint8_t id = uint8_t(header & 0xff);
    // Not a capability id: the device is gone, or the copy ends before this header.
    if (id == kAbsentCapId) break;
    caps.push_back({id, off});
    off = uint16_t((header >> 8) & 0xfc);
  }
  return caps;
}

std::vector<CapEntry> walk_ext_capabilities(const ConfigRead32& read32) {
  std::vector<CapEntry> caps;
  uint16_t off = kExtCapAreaStart;
  // Entries need not be in address order (the PCIe spec does not ask for it), so a backward
  // pointer is followed; only a revisit ends the walk (at most 960 entries fit).
  std::bitset<kExtCapAreaEnd / 4> seen;
  while (off >= kExtCapAreaStart && off < kExtCapAreaEnd && !seen.test(off / 4)) {
    seen.set(off / 4);
    uint32_t header = read32(off);
    // 0: no extended capabilities (conventional PCI); all-ones: unreadable or absent.
    if (header == 0 || header == kAbsent) break;
    caps.push_back({uint16_t(header & 0xffff), off});
    off = uint16_t((header >> 20) & 0xffc);  // 0 ends the list (below the area)
  }
  return caps;
}

std::optional<uint16_t> find_capability(const ConfigRead32& read32, uint8_t id) {
  return first_with(walk_capabilities(read32), id);
}

std::optional<uint16_t> find_ext_capability(const ConfigRead32& read32, uint16_t id) {
  return first_with(walk_ext_capabilities(read32), id);
}

}  // namespace pinless::pci
