// ViommuDevice: the request queue drained into the model.
#include "pinless/virtio/iommu/device.h"

#include <array>

namespace pinless::virtio {

Status ViommuDevice::activate(uint64_t features) {
  model_->set_features(features);
  return {};
}

Result<bool> ViommuDevice::process(uint16_t index, SplitQueue& queue) {
  if (index != viommu::kRequestQueue) return false;  // eventq buffers wait for fault records
  bool any = false;
  std::array<uint8_t, kMaxRequest> request{};
  while (true) {
    auto chain = PINLESS_TRY(queue.pop());
    if (!chain) return any;
    uint32_t used = 0;
    uint64_t writable = chain->writable_bytes();
    if (writable <= kMaxReply) {
      size_t n = chain->gather(request);
      reply_.assign(writable, 0);
      used = model_->handle(std::span<const uint8_t>(request.data(), n), reply_);
      chain->scatter(std::span<const uint8_t>(reply_.data(), used));
    } else {
      refused_.fetch_add(1, std::memory_order_relaxed);  // used length 0: the driver sees IOERR
    }
    queue.push(chain->head, used);
    requests_++;
    any = true;
  }
}

}  // namespace pinless::virtio
