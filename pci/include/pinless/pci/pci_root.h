// PciRoot: PCI segment 0, bus 0 of a pinless guest. Function 00:00.0 is a PCIe host bridge
// (Red Hat 1b36:0008, class 0x060000); up to 31 more single-function devices occupy slots
// 1..31. The guest reaches config space through two IoDevices:
//   ecam()       memory-mapped (ECAM), 4 KiB per function, register it over the whole ECAM
//                window (layout::kEcam); bus = offset >> 20, device = bits 19:15,
//                function = bits 14:12, register = bits 11:0
//   config_io()  the legacy CONFIG_ADDRESS/CONFIG_DATA ports, register at 0xcf8, size 8
// Accesses of 1, 2 or 4 bytes at a naturally aligned register are passed on; anything else,
// and every function nobody implements, reads all-ones and ignores writes.
// Owns the devices (shared with whoever else needs them, e.g. the VFIO glue).
// Thread-safe: one mutex serialises every config access (see PciDevice for what that means
// for BAR-move handlers).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>

#include "pinless/base/log.h"
#include "pinless/base/result.h"
#include "pinless/pci/io_device.h"
#include "pinless/pci/pci_device.h"

namespace pinless::pci {

// devfn = device << 3 | function.
constexpr uint8_t make_devfn(uint8_t device, uint8_t function) { return uint8_t(device << 3 | function); }

class PciRoot {
 public:
  static constexpr int kMaxDevices = 32;  // slots on bus 0, slot 0 being the host bridge
  static constexpr uint16_t kHostBridgeVendor = 0x1b36;
  static constexpr uint16_t kHostBridgeDevice = 0x0008;

  PciRoot();
  PciRoot(const PciRoot&) = delete;
  PciRoot& operator=(const PciRoot&) = delete;

  // Puts `dev` at function 0 of the lowest free slot; returns its devfn. ENOSPC when all
  // 31 slots are taken.
  [[nodiscard]] Result<uint8_t> add_device(std::shared_ptr<PciDevice> dev);
  // Puts `dev` at a chosen slot (1..31). EBUSY if taken.
  [[nodiscard]] Result<uint8_t> add_device_at(uint8_t slot, std::shared_ptr<PciDevice> dev);
  std::shared_ptr<PciDevice> device(uint8_t devfn) const;
  // Takes the device at `devfn` off the bus (its config space reads all-ones from then on)
  // and returns it; null if there was none. The host bridge stays.
  std::shared_ptr<PciDevice> remove_device(uint8_t devfn);

  // Config access by address (what both IoDevices end in; public for tests and debugging).
  uint32_t config_read(uint8_t bus, uint8_t devfn, uint16_t offset, uint8_t size);
  void config_write(uint8_t bus, uint8_t devfn, uint16_t offset, uint8_t size, uint32_t value);

  IoDevice& ecam() { return ecam_; }
  IoDevice& config_io() { return config_io_; }

 private:
  class Ecam final : public IoDevice {
   public:
    explicit Ecam(PciRoot& root) : root_(root) {}
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

   private:
    PciRoot& root_;
  };
  class ConfigIo final : public IoDevice {
   public:
    explicit ConfigIo(PciRoot& root) : root_(root) {}
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

   private:
    PciRoot& root_;
  };

  PciDevice* find_locked(uint8_t bus, uint8_t devfn) const;
  void log_bad(const char* what, uint64_t offset, size_t size);

  mutable std::mutex mu_;
  std::array<std::shared_ptr<PciDevice>, kMaxDevices> slots_;
  uint32_t config_address_ = 0;  // last value written to 0xcf8 (guarded by mu_)
  Ecam ecam_{*this};
  ConfigIo config_io_{*this};
  RateLimit bad_{5, 10000};
};

}  // namespace pinless::pci
