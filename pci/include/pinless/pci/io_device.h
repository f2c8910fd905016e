// The device-side interface of the I/O buses. A vCPU thread that takes a PIO or MMIO exit
// looks up the device that claimed the address and calls read() or write() with the offset
// from the start of the claimed range. Handlers run on the vCPU thread that took the exit,
// so a device reachable from several vCPUs must be thread-safe (or guard itself).
// Handlers trust nothing: offset and size come from the guest.
#pragma once

#include <cstdint>
#include <span>

namespace pinless::pci {

class IoDevice {
 public:
  virtual ~IoDevice() = default;
  // Fill `data` (1, 2, 4 or 8 bytes, little-endian) for a guest read at `offset`.
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  // Accept a guest write of `data` at `offset`.
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

}  // namespace pinless::pci
