// MsixTable: emulation of an MSI-X vector table and pending bit array (PBA), as both emulated
// devices and VFIO passthrough (which must not let the guest program the real table) need.
// The table is `vectors` 16-byte entries (message address lo/hi, data, vector control with
// the per-vector mask bit); the PBA is one bit per vector in 64-bit words. The capability's
// Message Control (enable, function mask) is fed in with set_control().
// Whenever the effective state of a vector changes (its message, or whether it is masked by
// its own bit, the function mask or MSI-X being disabled), the change callback is called with
// the new message and mask; the owner forwards that to its interrupt routing (in pinless,
// vmm's MsiRouter::update()).
// Thread-safe: one mutex; the callback runs with it held and must not call back into the table.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <vector>

#include "pinless/base/log.h"
#include "pinless/base/result.h"
#include "pinless/pci/msi_message.h"

namespace pinless::pci {

class PciConfigSpace;

class MsixTable {
 public:
  using ChangeFn = std::function<void(uint16_t vector, const MsiMessage& msg, bool masked)>;

  static constexpr uint16_t kMaxVectors = 2048;
  static constexpr uint64_t kEntrySize = 16;
  static constexpr uint16_t kControlEnable = 1u << 15;
  static constexpr uint16_t kControlFunctionMask = 1u << 14;

  struct Entry {
    uint64_t address = 0;
    uint32_t data = 0;
    bool masked = true;  // vectors come out of reset masked
  };

  // `vectors` must be 1..2048 (the capability's 11-bit table size field).
  [[nodiscard]] static Result<MsixTable> create(uint16_t vectors, ChangeFn on_change = nullptr);
  MsixTable(MsixTable&& o) noexcept;

  uint16_t vectors() const { return uint16_t(entries_.size()); }
  uint64_t table_bytes() const { return entries_.size() * kEntrySize; }
  uint64_t pba_bytes() const { return pba_.size() * 8; }

  // Guest accesses, `offset` relative to the start of the table / PBA. Only aligned 4- and
  // 8-byte accesses inside the structure are valid (PCI spec); others read all-ones and are
  // ignored on write.
  void table_read(uint64_t offset, std::span<uint8_t> data) const;
  void table_write(uint64_t offset, std::span<const uint8_t> data);
  void pba_read(uint64_t offset, std::span<uint8_t> data) const;
  void pba_write(uint64_t offset, std::span<const uint8_t> data);  // read-only: ignored

  // The capability's Message Control register changed (enable, function mask bits).
  void set_control(uint16_t message_control);
  bool enabled() const;
  bool function_masked() const;

  Entry entry(uint16_t vector) const;
  // Masked by any of: its mask bit, the function mask, MSI-X disabled.
  bool masked(uint16_t vector) const;
  // Pending bits, for devices that must hold an interrupt while its vector is masked.
  void set_pending(uint16_t vector, bool pending);
  bool pending(uint16_t vector) const;

 private:
  MsixTable(uint16_t vectors, ChangeFn on_change);
  bool masked_locked(uint16_t vector) const;
  // Runs `change` and calls on_change_ for every vector in [first, last] whose effective
  // (message, masked) state differs afterwards.
  template <typename F>
  void changing(uint16_t first, uint16_t last, F&& change);
  static bool valid(uint64_t offset, size_t size, uint64_t limit);

  mutable std::mutex mu_;
  std::vector<Entry> entries_;
  std::vector<uint64_t> pba_;
  bool enabled_ = false;
  bool function_masked_ = false;
  ChangeFn on_change_;
  mutable RateLimit bad_{5, 10000};
};

// Appends an MSI-X capability to `config` (table size, table and PBA BAR indicator and
// offset; enable and function mask writable). Returns the capability's offset; the
// Message Control register is at offset + 2.
[[nodiscard]] Result<uint16_t> add_msix_capability(PciConfigSpace& config, uint16_t vectors,
                                                   uint8_t table_bar, uint32_t table_offset,
                                                   uint8_t pba_bar, uint32_t pba_offset);

}  // namespace pinless::pci
