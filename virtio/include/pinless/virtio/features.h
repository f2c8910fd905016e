// The device status bits and the transport feature bits of virtio 1.x that every device
// shares (each device's own feature bits live with the device, e.g. iommu/wire.h).
#pragma once

#include <cstdint>

namespace pinless::virtio {

// Device status bits (virtio 1.x, 2.1).
inline constexpr uint8_t kStatusAcknowledge = 1, kStatusDriver = 2, kStatusDriverOk = 4, kStatusFeaturesOk = 8,
                         kStatusNeedsReset = 64, kStatusFailed = 128;
// Transport feature bits every pinless device offers or refuses.
inline constexpr uint64_t kFeatureVersion1 = 1ull << 32;
inline constexpr uint64_t kFeatureAccessPlatform = 1ull << 33;  // never offered: devices use guest-physical addresses

}  // namespace pinless::virtio
