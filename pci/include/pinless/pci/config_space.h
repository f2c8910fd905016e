// PciConfigSpace: the standard semantics of a type-0 PCI configuration space, shared by
// emulated devices and VFIO passthrough: 4 KiB of registers with per-byte write masks and
// write-1-to-clear masks (read-only ids, command, status RW1C, interrupt line), BARs (I/O,
// 32-bit and 64-bit memory, with the write-all-ones sizing protocol falling out of the write
// mask), a capability list builder, and BAR decode tracking: after every guest write that
// touches the command register or a BAR, the decoded region of each BAR is recomputed and
// the BAR-move handler is told about every change.
// Owned by its device. Thread-compatible (PciRoot serialises config access).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "pinless/base/log.h"
#include "pinless/base/result.h"
#include "pinless/pci/capabilities.h"
#include "pinless/pci/pci_device.h"

namespace pinless::pci {

struct PciIdentity {
  uint16_t vendor_id = 0;
  uint16_t device_id = 0;
  uint32_t class_code = 0;  // class << 16 | subclass << 8 | programming interface
  uint8_t revision = 0;
  uint16_t subsystem_vendor_id = 0;
  uint16_t subsystem_id = 0;
  uint8_t interrupt_pin = 0;  // 0 = no INTx, 1..4 = INTA..INTD
};

class PciConfigSpace {
 public:
  explicit PciConfigSpace(const PciIdentity& id);

  // --- Setup by the owning device (programming errors fail with EINVAL) ---
  // A BAR of `size` bytes (power of two; memory >= 16, I/O 4..256). A kMem64 BAR also takes
  // index + 1.
  [[nodiscard]] Status add_bar(uint8_t index, BarKind kind, uint64_t size, bool prefetchable = false);
  // Appends a capability (id, next pointer, then `body`) to the list in 0x40..0xff, dword
  // aligned; `writable` (empty or body-sized) is the per-byte write mask of the body.
  // Returns the capability's offset.
  [[nodiscard]] Result<uint16_t> add_capability(uint8_t id, std::span<const uint8_t> body,
                                                std::span<const uint8_t> writable = {});
  // Raw register contents and masks (device-specific registers, mirrored VFIO state).
  void set_bytes(uint16_t offset, std::span<const uint8_t> bytes);
  void set_u16(uint16_t offset, uint16_t v);
  void set_u32(uint16_t offset, uint32_t v);
  void set_write_mask(uint16_t offset, std::span<const uint8_t> mask);
  void set_rw1c_mask(uint16_t offset, std::span<const uint8_t> mask);
  // Programs a BAR address from the VMM side (BAR allocation before boot). Goes through the
  // same decode tracking as a guest write.
  [[nodiscard]] Status set_bar_address(uint8_t index, uint64_t address);

  // --- Guest access: invalid sizes/offsets read all-ones and are ignored on write ---
  uint32_t read(uint16_t offset, uint8_t size) const;
  void write(uint16_t offset, uint8_t size, uint32_t value);

  // --- State ---
  uint16_t command() const { return uint16_t(data_[kCommand] | data_[kCommand + 1] << 8); }
  std::optional<BarInfo> bar(uint8_t index) const;
  std::vector<BarInfo> bars() const;
  // Where BAR `index` is decoded right now, if it is.
  std::optional<uint64_t> decoded(uint8_t index) const;
  std::optional<uint16_t> find_capability(uint8_t id) const;
  void set_bar_move_handler(BarMoveFn fn) { on_move_ = std::move(fn); }

  static bool valid_access(uint16_t offset, uint8_t size);

 private:
  struct Bar {
    bool present = false;
    bool upper = false;  // the high dword of the 64-bit BAR at index - 1
    BarKind kind = BarKind::kMem32;
    uint64_t size = 0;
    bool prefetchable = false;
  };
  uint32_t dword(uint16_t offset) const;
  uint32_t dword_mask(uint16_t offset) const;
  uint64_t bar_address(uint8_t index) const;
  bool bar_sizing(uint8_t index) const;
  std::optional<uint64_t> wanted_decode(uint8_t index) const;
  void update_decode();

  std::array<uint8_t, kConfigSpaceSize> data_{};
  std::array<uint8_t, kConfigSpaceSize> wmask_{};
  std::array<uint8_t, kConfigSpaceSize> w1c_{};
  std::array<Bar, kNumBars> bars_{};
  std::array<std::optional<uint64_t>, kNumBars> decoded_{};
  uint16_t last_cap_ = 0;       // offset of the last capability (0: none yet)
  uint16_t next_cap_ = kCapAreaStart;  // where the next capability goes
  BarMoveFn on_move_;
  RateLimit bad_{5, 10000};
};

}  // namespace pinless::pci
