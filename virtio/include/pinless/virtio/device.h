// VirtioDevice: what a virtio device model (virtio-iommu, and the devices that follow) gives
// its transport: identity, features, its config structure and its queues' work. The
// transport owns negotiation, the rings and interrupts; a device sees only negotiated
// features and validated queues. Called by the transport with its lock held, so a device
// needs no lock for transport-driven calls (it states its own threading for anything else).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pinless/base/result.h"
#include "pinless/virtio/features.h"
#include "pinless/virtio/queue.h"

namespace pinless::virtio {

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  virtual uint16_t device_id() const = 0;      // virtio device type (23 = iommu)
  virtual uint32_t pci_class() const = 0;      // class << 16 | subclass << 8 | prog-if
  virtual uint64_t features() const = 0;       // offered; includes kFeatureVersion1
  virtual std::vector<uint16_t> queue_max_sizes() const = 0;  // one per queue, powers of two
  virtual uint32_t config_size() const = 0;

  // The device-specific config structure. The transport has checked that
  // [offset, offset + data.size()) lies inside config_size(); the bytes written are guest data.
  virtual void read_config(uint32_t offset, std::span<uint8_t> data) = 0;
  virtual void write_config(uint32_t offset, std::span<const uint8_t> data) = 0;

  // The driver set DRIVER_OK with these features (a subset of features(), with VERSION_1).
  // An error puts the device into DEVICE_NEEDS_RESET.
  [[nodiscard]] virtual Status activate(uint64_t features) = 0;
  // The driver notified queue `index` (enabled, device active): serve what it made
  // available. Returns whether used buffers were returned (the transport then interrupts the
  // driver if it wants that); an error means the driver broke the queue (DEVICE_NEEDS_RESET).
  [[nodiscard]] virtual Result<bool> process(uint16_t index, SplitQueue& queue) = 0;
  // The driver reset the device (or the VM is going away): drop all state from activate on.
  virtual void reset() = 0;

  virtual std::string name() const = 0;  // for logs: "virtio-iommu"
};

}  // namespace pinless::virtio
