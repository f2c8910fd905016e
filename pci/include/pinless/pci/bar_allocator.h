// PciBarAllocator: hands out BAR addresses from the host bridge windows (the same ones the
// DSDT's _CRS describes), each naturally aligned to the BAR size, so devices come up with
// their BARs assigned before the guest boots (Linux keeps valid firmware assignments).
// Policy: I/O BARs from the I/O window; 32-bit BARs from the 32-bit window; 64-bit BARs from
// the 64-bit window, falling back to the 32-bit window when it has no room (or is absent).
// Addresses are never reused (no free): assignment happens once, at build time.
// Thread-compatible.
#pragma once

#include <cstdint>
#include <optional>

#include "pinless/base/result.h"
#include "pinless/base/types.h"
#include "pinless/pci/pci_device.h"

namespace pinless::pci {

class PciConfigSpace;

class PciBarAllocator {
 public:
  PciBarAllocator(Range<Gpa> mmio32, Range<Gpa> mmio64, Range<uint64_t> io);

  // A naturally aligned address for a BAR of `size` bytes (power of two). ENOSPC when the
  // windows are full, EINVAL for a bad size.
  [[nodiscard]] Result<uint64_t> allocate(BarKind kind, uint64_t size);
  // Allocates and programs every BAR of `config` (decode stays as the command register has
  // it, normally off). Returns the first error, leaving earlier BARs assigned.
  [[nodiscard]] Status assign(PciConfigSpace& config);

 private:
  struct Window {
    uint64_t start = 0;
    uint64_t end = 0;   // exclusive
    uint64_t next = 0;  // lowest address not handed out yet
  };
  static std::optional<uint64_t> take(Window& w, uint64_t size);

  Window mmio32_;
  Window mmio64_;
  Window io_;
};

}  // namespace pinless::pci
