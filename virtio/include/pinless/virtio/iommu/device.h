// ViommuDevice: the virtio-iommu as a VirtioDevice, so VirtioPciDevice can carry it. It owns
// the ViommuModel and moves requests between the request queue and the model: each chain's
// device-readable bytes are gathered (at most kMaxRequest: every request type is smaller),
// handed to the model with a reply buffer the size of the chain's writable part, and the
// reply is scattered back; the whole ring is drained per notification (the Linux driver
// queues MAP/UNMAP without kicking and busy-polls the used ring). The event queue's buffers
// are left with the device for fault records (none are reported yet).
// Thread-compatible: the transport calls it with its lock held; the model has its own lock.
#pragma once

#include <atomic>
#include <memory>

#include "pinless/virtio/device.h"
#include "pinless/virtio/iommu/model.h"

namespace pinless::virtio {

class ViommuDevice final : public VirtioDevice {
 public:
  static constexpr uint16_t kRequestQueueSize = 256;
  static constexpr uint16_t kEventQueueSize = 64;
  static constexpr size_t kMaxRequest = 128;
  // A writable part larger than this (PROBE needs probe_size + 4) is refused unwritten.
  static constexpr size_t kMaxReply = 64 * 1024;

  explicit ViommuDevice(std::unique_ptr<ViommuModel> model) : model_(std::move(model)) {}

  uint16_t device_id() const override { return viommu::kDeviceId; }
  // Base system peripheral, "other IOMMU" (class 0x08, subclass 0x06).
  uint32_t pci_class() const override { return 0x080600; }
  uint64_t features() const override { return model_->device_features(); }
  std::vector<uint16_t> queue_max_sizes() const override { return {kRequestQueueSize, kEventQueueSize}; }
  uint32_t config_size() const override { return viommu::config::kSize; }
  void read_config(uint32_t offset, std::span<uint8_t> data) override { model_->config_read(offset, data); }
  void write_config(uint32_t offset, std::span<const uint8_t> data) override { model_->config_write(offset, data); }
  [[nodiscard]] Status activate(uint64_t features) override;
  [[nodiscard]] Result<bool> process(uint16_t index, SplitQueue& queue) override;
  void reset() override { model_->reset(); }
  std::string name() const override { return "virtio-iommu"; }

  ViommuModel& model() { return *model_; }
  uint64_t requests() const { return requests_; }
  uint64_t refused_chains() const { return refused_.load(std::memory_order_relaxed); }

 private:
  std::unique_ptr<ViommuModel> model_;
  std::vector<uint8_t> reply_;
  uint64_t requests_ = 0;
  std::atomic<uint64_t> refused_{0};  // written on the queue's thread, read by the API
};

}  // namespace pinless::virtio
