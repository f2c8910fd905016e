#include "pinless/iommu/pin_accounting.h"

#include <algorithm>
#include <cstdlib>

#include "pinless/base/log.h"

namespace pinless::iommu {

uint64_t PinAccounting::headroom() const {
  if (limit_ == 0) return ~uint64_t{0};
  return limit_ > total() ? limit_ - total() : 0;
}

void PinAccounting::note_peak() { peak_ = std::max(peak_, total()); }

void PinAccounting::charge_static(uint64_t bytes) {
  static_ += bytes;
  note_peak();
}

void PinAccounting::release_static(uint64_t bytes) {
  if (bytes > static_) {
    logger("iommu")->critical("pin accounting: releasing {} static bytes, only {} charged", bytes, static_);
    std::abort();
  }
  static_ -= bytes;
}

void PinAccounting::charge(uint32_t region, uint64_t bytes) {
  if (region >= regions_.size()) regions_.resize(region + 1, 0);
  regions_[region] += bytes;
  dynamic_ += bytes;
  note_peak();
}

void PinAccounting::release(uint32_t region, uint64_t bytes) {
  // A release without a charge is a broken invariant of the engine, not guest input.
  if (region >= regions_.size() || regions_[region] < bytes) {
    logger("iommu")->critical("pin accounting: region {} releases {} bytes it never charged", region, bytes);
    std::abort();
  }
  regions_[region] -= bytes;
  dynamic_ -= bytes;
}

void PinAccounting::attribute(uint32_t dev_id, uint64_t faults, uint64_t bytes_mapped, uint64_t invalid) {
  auto& d = devices_[dev_id];
  d.faults += faults;
  d.groups++;
  d.bytes_mapped += bytes_mapped;
  d.invalid += invalid;
}

}  // namespace pinless::iommu
