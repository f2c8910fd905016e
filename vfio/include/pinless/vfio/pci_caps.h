// Reading a real device's PCI configuration space, before pinless virtualises it: walking
// the standard capability list and decoding the MSI and MSI-X capabilities and the BARs'
// type bits. Everything works on a copy of the config bytes read once from VFIO; the walk
// is bounds- and loop-checked (a device, like a guest, is not trusted to be well formed).
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace pinless::vfio {

struct PciCap {
  uint8_t id = 0;
  uint8_t offset = 0;
  uint8_t length = 0;  // bytes the capability occupies (known ids; else up to the next one)
};

// The standard capability list as pci::walk_capabilities() finds it (bounds and loop
// checked), with each capability's length.
std::vector<PciCap> walk_capabilities(std::span<const uint8_t> config);

struct MsiCapInfo {
  uint8_t offset = 0;
  bool is64 = false;
  bool per_vector_mask = false;
  uint8_t max_vectors_log2 = 0;  // Multiple Message Capable
  uint8_t length() const { return uint8_t((is64 ? 14 : 10) + (per_vector_mask ? 10 : 0)); }
  uint8_t data_offset() const { return uint8_t(is64 ? 0x0c : 0x08); }
  uint8_t mask_offset() const { return uint8_t(is64 ? 0x10 : 0x0c); }
};
MsiCapInfo decode_msi(std::span<const uint8_t> config, uint8_t offset);

struct MsixCapInfo {
  uint8_t offset = 0;
  uint16_t vectors = 0;
  uint8_t table_bar = 0;
  uint32_t table_offset = 0;
  uint8_t pba_bar = 0;
  uint32_t pba_offset = 0;
  uint64_t table_bytes() const { return uint64_t(vectors) * 16; }
  uint64_t pba_bytes() const { return (uint64_t(vectors) + 63) / 64 * 8; }
};
MsixCapInfo decode_msix(std::span<const uint8_t> config, uint8_t offset);

// Bytes a capability of `id` occupies given its header (0 when unknown).
uint8_t capability_length(std::span<const uint8_t> config, uint8_t id, uint8_t offset);

enum class BarType : uint8_t { kNone, kIo, kMem32, kMem64 };
struct BarBits {
  BarType type = BarType::kNone;
  bool prefetchable = false;
};
// BAR `index` type bits from the real config space (as the device reports them).
BarBits decode_bar(std::span<const uint8_t> config, uint8_t index);

}  // namespace pinless::vfio
