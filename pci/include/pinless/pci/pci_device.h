// PciDevice: what PciRoot needs from a function on bus 0, whether emulated or passed through
// with VFIO: its 4 KiB configuration space, its BARs, and a way to hear when the guest moves
// or (un)maps a BAR so the VMM can (de)register the BAR's MMIO/PIO handler or KVM memslot.
// PciRoot serialises all config accesses under its lock, so implementations need no lock for
// config state, but BAR-move handlers run on the vCPU thread doing the config write, with
// that lock held: they must not call back into PciRoot.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace pinless::pci {

// Standard header offsets (type 0) and command/status bits used across the pci/ folder.
constexpr uint16_t kConfigSpaceSize = 4096;
constexpr uint16_t kVendorId = 0x00, kDeviceId = 0x02, kCommand = 0x04, kStatus = 0x06,
                   kRevisionId = 0x08, kClassCode = 0x09, kCacheLineSize = 0x0c,
                   kHeaderType = 0x0e, kBar0 = 0x10, kSubsystemVendorId = 0x2c,
                   kSubsystemId = 0x2e, kRomBar = 0x30, kCapabilitiesPointer = 0x34,
                   kInterruptLine = 0x3c, kInterruptPin = 0x3d;
constexpr uint16_t kCommandIo = 1u << 0, kCommandMemory = 1u << 1, kCommandBusMaster = 1u << 2,
                   kCommandIntxDisable = 1u << 10;
constexpr uint16_t kStatusCapList = 1u << 4;
constexpr int kNumBars = 6;

enum class BarKind : uint8_t { kIo, kMem32, kMem64 };

struct BarInfo {
  uint8_t index = 0;  // 0..5; a 64-bit BAR also uses index + 1
  BarKind kind = BarKind::kMem32;
  uint64_t size = 0;  // power of two
  bool prefetchable = false;
  // The address currently programmed (whether or not decoding is enabled); 0 = unassigned.
  uint64_t address = 0;
};

// A BAR's decoded region appeared (from empty), disappeared (to empty) or moved.
// Regions are decoded when the BAR holds a non-zero address, the matching command-register
// enable (I/O or memory space) is set, and the guest is not in the middle of sizing it.
struct BarMove {
  BarInfo bar;                   // bar.address is the new programmed address
  std::optional<uint64_t> from;  // previously decoded at this address
  std::optional<uint64_t> to;    // now decoded at this address
};
using BarMoveFn = std::function<void(const BarMove&)>;

class PciDevice {
 public:
  virtual ~PciDevice() = default;

  // Config space access. PciRoot has already validated the access: `size` is 1, 2 or 4,
  // `offset` is a multiple of `size` and below kConfigSpaceSize. `value` and the return are
  // little-endian register values in the low `size` bytes. Still guest data: a device must
  // not assume anything about the value written.
  virtual uint32_t config_read(uint16_t offset, uint8_t size) = 0;
  virtual void config_write(uint16_t offset, uint8_t size, uint32_t value) = 0;

  // The implemented BARs (64-bit BARs appear once, under their lower index).
  virtual std::vector<BarInfo> bars() const = 0;
  // Installs the handler for BAR moves (replacing any previous one).
  virtual void set_bar_move_handler(BarMoveFn fn) = 0;

  // For logs: "virtio-net", "vfio 0000:01:00.0", ...
  virtual std::string name() const = 0;
};

}  // namespace pinless::pci
