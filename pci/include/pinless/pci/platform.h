// What a PCI device model needs from the VM it sits in, as three small interfaces so that
// device models below vmm (VFIO passthrough in vfio/) can use them without including vmm:
//   IoRegistry   claim and release PIO/MMIO ranges of the guest (vmm's IoBus)
//   MemorySlots  back guest-physical ranges directly with host memory (vmm's Vm, memslots)
//   MsiRoutes    GSIs and eventfds for MSI/MSI-X vectors (vmm's MsiRouter)
// Each implementation states its own thread-safety; all three are called from vCPU threads
// (BAR moves, vector reprogramming) as well as at build time.
#pragma once

#include <cstdint>
#include <string>

#include "pinless/base/result.h"
#include "pinless/base/types.h"
#include "pinless/pci/io_device.h"
#include "pinless/pci/msi_message.h"

namespace pinless::pci {

class IoRegistry {
 public:
  virtual ~IoRegistry() = default;
  // Fails when the range overlaps another claim (bases are guest-programmed, so expect it).
  [[nodiscard]] virtual Status register_pio(uint16_t base, uint32_t size, IoDevice* dev, std::string name) = 0;
  [[nodiscard]] virtual Status register_mmio(Gpa base, uint64_t size, IoDevice* dev, std::string name) = 0;
  // Removes the range starting at `base` only if `dev` registered it; returns whether it did.
  virtual bool unregister_pio(uint16_t base, const IoDevice* dev) = 0;
  virtual bool unregister_mmio(Gpa base, const IoDevice* dev) = 0;
};

class MemorySlots {
 public:
  virtual ~MemorySlots() = default;
  // Guest range `gpa` now reads and writes `host` (not owned: the caller keeps it mapped while
  // the slot is set). A size of 0 removes slot `slot`.
  [[nodiscard]] virtual Status set_memory_slot(uint32_t slot, Range<Gpa> gpa, uint8_t* host) = 0;
};

class MsiRoutes {
 public:
  virtual ~MsiRoutes() = default;
  // A free GSI, unrouted until update(); release_gsi() detaches its eventfd and frees it.
  [[nodiscard]] virtual Result<uint32_t> allocate_gsi() = 0;
  [[nodiscard]] virtual Status release_gsi(uint32_t gsi) = 0;
  // The guest reprogrammed a vector: its message and whether it is masked.
  [[nodiscard]] virtual Status update(uint32_t gsi, const MsiMessage& msg, bool masked) = 0;
  // Signalling `event_fd` (not owned) raises the vector while it is routed and unmasked.
  [[nodiscard]] virtual Status attach_irqfd(uint32_t gsi, int event_fd) = 0;
};

}  // namespace pinless::pci
