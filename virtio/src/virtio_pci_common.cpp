// VirtioPciDevice, part 2 of 3: the common configuration structure (virtio 1.x, 4.1.4.3):
// feature negotiation, device status and reset, queue setup and enable. Accesses must hit a
// field with its own width (64-bit queue addresses as two 32-bit halves); anything else
// reads 0 and is ignored, with a rate-limited warning.
#include <fmt/format.h>

#include "pinless/virtio/virtio_pci.h"

namespace pinless::virtio {
namespace {

// Field offsets.
constexpr uint64_t kDeviceFeatureSelect = 0x00, kDeviceFeature = 0x04, kDriverFeatureSelect = 0x08,
                   kDriverFeature = 0x0c, kConfigMsixVector = 0x10, kNumQueues = 0x12, kDeviceStatus = 0x14,
                   kConfigGeneration = 0x15, kQueueSelect = 0x16, kQueueSize = 0x18, kQueueMsixVector = 0x1a,
                   kQueueEnable = 0x1c, kQueueNotifyOff = 0x1e, kQueueDesc = 0x20, kQueueDriver = 0x28,
                   kQueueDevice = 0x30;

size_t field_width(uint64_t offset) {
  switch (offset) {
    case kDeviceFeatureSelect: case kDeviceFeature: case kDriverFeatureSelect: case kDriverFeature:
      return 4;
    case kConfigMsixVector: case kNumQueues: case kQueueSelect: case kQueueSize: case kQueueMsixVector:
    case kQueueEnable: case kQueueNotifyOff:
      return 2;
    case kDeviceStatus: case kConfigGeneration:
      return 1;
    case kQueueDesc: case kQueueDesc + 4: case kQueueDriver: case kQueueDriver + 4: case kQueueDevice:
    case kQueueDevice + 4:
      return 4;
    default:
      return 0;
  }
}

uint32_t half(Gpa a, bool high) { return uint32_t(high ? a.value() >> 32 : a.value()); }
Gpa with_half(Gpa a, bool high, uint32_t v) {
  return Gpa(high ? (a.value() & 0xffffffffull) | uint64_t(v) << 32 : (a.value() & ~0xffffffffull) | v);
}

}  // namespace

uint32_t VirtioPciDevice::common_read(uint64_t offset, size_t size) {
  if (field_width(offset) != size) {
    if (warn_.allow()) logger("vmm")->warn("{}: common config read of {} bytes at {:#x}", name(), size, offset);
    return 0;
  }
  Queue* q = queue_select_ < queues_.size() ? &queues_[queue_select_] : nullptr;
  switch (offset) {
    case kDeviceFeatureSelect: return device_feature_select_;
    case kDeviceFeature:
      return device_feature_select_ < 2 ? uint32_t(device_features_ >> (32 * device_feature_select_)) : 0;
    case kDriverFeatureSelect: return driver_feature_select_;
    case kDriverFeature:
      return driver_feature_select_ < 2 ? uint32_t(driver_features_ >> (32 * driver_feature_select_)) : 0;
    case kConfigMsixVector: return config_vector_;
    case kNumQueues: return uint32_t(queues_.size());
    case kDeviceStatus: return status_;
    case kConfigGeneration: return 0;  // the device config never changes under the driver
    case kQueueSelect: return queue_select_;
    case kQueueSize: return q ? q->size : 0;  // 0: no such queue
    case kQueueMsixVector: return q ? q->vector : kNoVector;
    case kQueueEnable: return q && q->ring ? 1 : 0;
    case kQueueNotifyOff: return q ? queue_select_ : 0;
    case kQueueDesc: case kQueueDesc + 4: return q ? half(q->layout.desc, offset != kQueueDesc) : 0;
    case kQueueDriver: case kQueueDriver + 4: return q ? half(q->layout.driver, offset != kQueueDriver) : 0;
    case kQueueDevice: case kQueueDevice + 4: return q ? half(q->layout.device, offset != kQueueDevice) : 0;
  }
  return 0;
}

void VirtioPciDevice::common_write(uint64_t offset, size_t size, uint32_t value) {
  if (field_width(offset) != size) {
    if (warn_.allow()) logger("vmm")->warn("{}: common config write of {} bytes at {:#x}", name(), size, offset);
    return;
  }
  Queue* q = queue_select_ < queues_.size() ? &queues_[queue_select_] : nullptr;
  // Queue setup is frozen while the queue is enabled (there is no queue reset).
  bool q_writable = q && !q->ring;
  bool negotiating = !(status_ & kStatusFeaturesOk);
  switch (offset) {
    case kDeviceFeatureSelect: device_feature_select_ = value; return;
    case kDriverFeatureSelect: driver_feature_select_ = value; return;
    case kDriverFeature:
      if (negotiating && driver_feature_select_ < 2) {
        uint64_t shift = 32 * driver_feature_select_;
        driver_features_ = (driver_features_ & ~(0xffffffffull << shift)) | (uint64_t(value) << shift);
      }
      return;
    case kConfigMsixVector:
      config_vector_ = value < vectors_.size() ? uint16_t(value) : kNoVector;
      return;
    case kDeviceStatus: write_status(uint8_t(value)); return;
    case kQueueSelect: queue_select_ = uint16_t(value); return;
    case kQueueSize:
      // A smaller power of two is allowed; anything else keeps the current size.
      if (q_writable && value != 0 && value <= max_sizes_[queue_select_] && (value & (value - 1)) == 0)
        q->size = uint16_t(value);
      return;
    case kQueueMsixVector:
      if (q) q->vector = value < vectors_.size() ? uint16_t(value) : kNoVector;
      return;
    case kQueueEnable:
      if (q_writable && value == 1) enable_queue(queue_select_);
      return;
    case kQueueDesc: case kQueueDesc + 4:
      if (q_writable) q->layout.desc = with_half(q->layout.desc, offset != kQueueDesc, value);
      return;
    case kQueueDriver: case kQueueDriver + 4:
      if (q_writable) q->layout.driver = with_half(q->layout.driver, offset != kQueueDriver, value);
      return;
    case kQueueDevice: case kQueueDevice + 4:
      if (q_writable) q->layout.device = with_half(q->layout.device, offset != kQueueDevice, value);
      return;
  }
  // Read-only fields: ignored.
}

void VirtioPciDevice::write_status(uint8_t value) {
  if (value == 0) {
    reset_locked();
    return;
  }
  uint8_t added = uint8_t(value & ~status_);
  status_ = uint8_t(value | (status_ & kStatusNeedsReset));
  if (added & kStatusFeaturesOk) {
    // Accept only a subset of what was offered, with VERSION_1; otherwise FEATURES_OK does
    // not stick and the driver, re-reading it, gives up (4.1.4.3.2 / 3.1.1).
    bool ok = (driver_features_ & ~device_features_) == 0 && (driver_features_ & kFeatureVersion1);
    if (!ok) {
      status_ &= uint8_t(~kStatusFeaturesOk);
      if (warn_.allow()) {
        logger("vmm")->warn("{}: driver features {:#x} refused (offered {:#x})", name(), driver_features_,
                            device_features_);
      }
    }
  }
  if ((added & kStatusDriverOk) && (status_ & kStatusFeaturesOk)) {
    if (auto s = device_->activate(driver_features_); !s) needs_reset(s.error());
  }
}

void VirtioPciDevice::enable_queue(uint16_t index) {
  Queue& q = queues_[index];
  QueueLayout l = q.layout;
  l.size = q.size;
  auto ring = SplitQueue::create(ram_, l);
  if (!ring) {
    needs_reset(std::move(ring).error().within(fmt::format("queue {}", index)));
    return;
  }
  q.ring.emplace(std::move(*ring));
}

void VirtioPciDevice::reset_locked() {
  device_->reset();
  for (size_t i = 0; i < queues_.size(); ++i) queues_[i] = Queue{max_sizes_[i]};
  driver_features_ = 0;
  device_feature_select_ = driver_feature_select_ = 0;
  queue_select_ = 0;
  config_vector_ = kNoVector;
  status_ = 0;
  isr_ = 0;
}

// The driver broke something the device cannot recover from by itself: tell it (4.1.4.3:
// DEVICE_NEEDS_RESET plus a config change interrupt) and stop serving until it resets.
void VirtioPciDevice::needs_reset(const Error& why) {
  if (warn_.allow()) logger("vmm")->warn("{}: device needs reset: {}", name(), why.message());
  if (status_ & kStatusNeedsReset) return;
  status_ |= kStatusNeedsReset;
  raise(config_vector_, kIsrConfig);
}

}  // namespace pinless::virtio
