// VirtioPciDevice: the modern virtio-pci transport (virtio 1.x, section 4.1) for one
// VirtioDevice: a PCI function (vendor 0x1af4, device 0x1040 + type) with one 64-bit memory
// BAR holding every structure the vendor capabilities point at:
//   0x0000 common config   feature negotiation, status, queue setup (CommonConfig)
//   0x1000 ISR status      read-to-clear; only meaningful without MSI-X
//   0x2000 device config   the device's own structure
//   0x3000 notify          queue i at 0x3000 + 4 * i (back it with an ioeventfd)
//   0x4000 MSI-X table, 0x5000 MSI-X PBA (one vector for config changes + one per queue)
// plus the PCI_CFG capability (a window onto the BAR through config space, which the spec
// requires). Owns the device, its queues and one eventfd per MSI-X vector, attached to a GSI
// through pci::MsiRoutes; raising a vector writes its eventfd, or marks it pending while the
// guest has it masked. Every guest value is checked; a driver that breaks a queue puts the
// device into DEVICE_NEEDS_RESET and nothing else happens.
// Thread-safe: one mutex serialises config space, BAR accesses and notifications (vCPU
// threads and the event loop); the device is called with it held.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "pinless/base/fd.h"
#include "pinless/base/log.h"
#include "pinless/base/sys.h"
#include "pinless/pci/config_space.h"
#include "pinless/pci/io_device.h"
#include "pinless/pci/msix_table.h"
#include "pinless/pci/pci_device.h"
#include "pinless/pci/platform.h"
#include "pinless/virtio/device.h"
#include "pinless/virtio/guest_ram.h"
#include "pinless/virtio/queue.h"

namespace pinless::virtio {

class VirtioPciDevice final : public pci::PciDevice, public pci::IoDevice {
 public:
  static constexpr uint16_t kVendor = 0x1af4;
  static constexpr uint16_t kDeviceIdBase = 0x1040;
  static constexpr uint8_t kBar = 0;
  static constexpr uint64_t kCommonOffset = 0x0000, kCommonSize = 0x38;
  static constexpr uint64_t kIsrOffset = 0x1000;
  static constexpr uint64_t kDeviceOffset = 0x2000, kDeviceMax = 0x1000;
  static constexpr uint64_t kNotifyOffset = 0x3000;
  static constexpr uint32_t kNotifyMultiplier = 4;
  static constexpr uint64_t kMsixTableOffset = 0x4000, kMsixPbaOffset = 0x5000;
  static constexpr uint64_t kBarSize = 0x8000;
  static constexpr uint16_t kNoVector = 0xffff;
  static constexpr uint8_t kIsrQueue = 1, kIsrConfig = 2;

  // `routes` may be null (no interrupts: tests, or a device that never interrupts).
  // `ram` must outlive the device.
  [[nodiscard]] static Result<std::unique_ptr<VirtioPciDevice>> create(Sys& sys, std::unique_ptr<VirtioDevice> device,
                                                                      const GuestRam& ram, pci::MsiRoutes* routes);
  ~VirtioPciDevice() override;

  // pci::PciDevice
  uint32_t config_read(uint16_t offset, uint8_t size) override;
  void config_write(uint16_t offset, uint8_t size, uint32_t value) override;
  std::vector<pci::BarInfo> bars() const override;
  void set_bar_move_handler(pci::BarMoveFn fn) override;
  std::string name() const override;

  // pci::IoDevice: the BAR, `offset` from its start.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Queue `index` was notified (the notify region written, or its ioeventfd fired).
  void notify(uint16_t index);
  uint16_t num_queues() const { return uint16_t(max_sizes_.size()); }
  // Config space, for BAR assignment at build time, before any vCPU runs (unlocked).
  pci::PciConfigSpace& config() { return config_; }
  // BAR offset of queue `index`'s notify address (for KVM_IOEVENTFD).
  static uint64_t notify_offset(uint16_t index) { return kNotifyOffset + uint64_t(kNotifyMultiplier) * index; }

  uint8_t status() const;
  uint64_t driver_features() const;
  // Interrupts delivered (eventfd writes) and held pending while masked, for tests and counters.
  uint64_t interrupts() const;

 private:
  VirtioPciDevice(Sys& sys, std::unique_ptr<VirtioDevice> device, const GuestRam& ram, pci::MsiRoutes* routes);
  [[nodiscard]] Status build();
  [[nodiscard]] Status setup_vectors();

  // Common config (virtio_pci_common.cpp).
  uint32_t common_read(uint64_t offset, size_t size);
  void common_write(uint64_t offset, size_t size, uint32_t value);
  void write_status(uint8_t value);
  void enable_queue(uint16_t index);
  void reset_locked();
  void needs_reset(const Error& why);

  // Interrupts (virtio_pci_interrupts.cpp).
  // isr_bit: kIsrQueue or kIsrConfig, what the ISR shows when there is no vector to raise.
  void raise(uint16_t vector, uint8_t isr_bit);
  void flush_pending();
  void sync_msix_control();

  void bar_read(uint64_t offset, std::span<uint8_t> data);
  void bar_write(uint64_t offset, std::span<const uint8_t> data);
  void pci_cfg_access(bool write, uint32_t* value);
  void notify_locked(uint16_t index);

  struct Queue {
    uint16_t size = 0;
    uint16_t vector = kNoVector;
    QueueLayout layout;
    std::optional<SplitQueue> ring;  // set while enabled
  };
  struct Vector {
    UniqueFd event;
    uint32_t gsi = 0;
    bool pending = false;
  };

  mutable std::mutex mu_;
  Sys& sys_;
  std::unique_ptr<VirtioDevice> device_;
  const GuestRam& ram_;
  pci::MsiRoutes* routes_;
  pci::PciConfigSpace config_;
  std::optional<pci::MsixTable> msix_;
  uint16_t msix_cap_ = 0;
  uint16_t pci_cfg_cap_ = 0;
  std::vector<uint16_t> max_sizes_;
  std::vector<Queue> queues_;
  std::vector<Vector> vectors_;
  uint64_t device_features_ = 0;
  uint64_t driver_features_ = 0;
  uint32_t device_feature_select_ = 0;
  uint32_t driver_feature_select_ = 0;
  uint16_t queue_select_ = 0;
  uint16_t config_vector_ = kNoVector;
  uint8_t status_ = 0;
  uint8_t isr_ = 0;
  uint64_t interrupts_ = 0;
  RateLimit warn_{5, 10000};
};

}  // namespace pinless::virtio
