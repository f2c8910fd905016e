// IoBus: the PIO and MMIO address spaces of the guest. Maps [base, base + size) ranges to
// pci::IoDevice* (not owned: devices outlive the bus's use of them, see builder.cpp), rejects
// overlapping registrations, looks up in O(log n). An access nobody claims, or one that runs
// past the end of the claimed range, is ignored on write and reads as all-ones, with a
// rate-limited debug log: the guest can never crash pinless through the bus.
// Thread-safe: vCPU threads dispatch concurrently (shared lock); registration (at build time,
// or later when a guest moves a BAR) takes the exclusive lock.
#pragma once

#include <cstdint>
#include <map>
#include <shared_mutex>
#include <span>
#include <string>

#include "pinless/base/log.h"
#include "pinless/base/result.h"
#include "pinless/base/types.h"
#include "pinless/pci/io_device.h"
#include "pinless/pci/platform.h"

namespace pinless::vmm {

class IoBus final : public pci::IoRegistry {
 public:
  enum class Space { kPio, kMmio };

  Status register_pio(uint16_t base, uint32_t size, pci::IoDevice* dev, std::string name) override;
  Status register_mmio(Gpa base, uint64_t size, pci::IoDevice* dev, std::string name) override;
  // Removes the range that starts exactly at `base` if `dev` registered it; returns whether
  // one was removed. The owner check matters because bases are guest-programmed (BARs): a
  // device whose registration was refused must not remove the range that refused it.
  bool unregister_pio(uint16_t base, const pci::IoDevice* dev) override;
  bool unregister_mmio(Gpa base, const pci::IoDevice* dev) override;

  // Dispatch. Return whether a device claimed the access (unclaimed reads are filled with 0xff).
  bool pio_read(uint16_t port, std::span<uint8_t> data);
  bool pio_write(uint16_t port, std::span<const uint8_t> data);
  bool mmio_read(Gpa addr, std::span<uint8_t> data);
  bool mmio_write(Gpa addr, std::span<const uint8_t> data);

  // Name of the device claiming `addr` ("" if none): for logs and tests.
  std::string owner(Space space, uint64_t addr) const;
  uint64_t unclaimed_accesses() const { return unclaimed_.count(); }

 private:
  struct Entry {
    uint64_t size;
    pci::IoDevice* dev;
    std::string name;
  };
  using Map = std::map<uint64_t, Entry>;  // keyed by base

  Status insert(Map& map, Space space, uint64_t base, uint64_t size, pci::IoDevice* dev, std::string name);
  bool erase(Map& map, uint64_t base, const pci::IoDevice* dev);
  // The device and offset for an access of `len` bytes at `addr`, or nullptr.
  static pci::IoDevice* find(const Map& map, uint64_t addr, uint64_t len, uint64_t* offset);
  bool dispatch(Space space, uint64_t addr, uint8_t* data, size_t len, bool is_write);

  mutable std::shared_mutex mu_;
  Map pio_;
  Map mmio_;
  RateLimit unclaimed_{5, 10000};
};

}  // namespace pinless::vmm
