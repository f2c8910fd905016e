// PinAccounting: how many bytes of guest RAM this VM has pinned (= mapped in the host IOMMU),
// per region and in total, split into static (pin policy) and fault-driven, with an optional
// cap (--pin-limit). Fault-driven maps are also attributed to the device whose fault caused
// them. It mirrors what the kernel charges to RLIMIT_MEMLOCK / the user, so the VMM can stop
// before the kernel says ENOMEM and reclaim instead.
// Owned by the VMM; shared by PinnedRegion and FaultEngine. Thread-compatible (event-loop
// thread after boot).
#pragma once

#include <cstdint>
#include <map>
#include <vector>

namespace pinless::iommu {

class PinAccounting {
 public:
  // limit_bytes == 0: no cap.
  explicit PinAccounting(uint64_t limit_bytes = 0) : limit_(limit_bytes) {}

  uint64_t limit() const { return limit_; }
  void set_limit(uint64_t bytes) { limit_ = bytes; }
  uint64_t total() const { return static_ + dynamic_; }
  uint64_t static_bytes() const { return static_; }
  uint64_t fault_bytes() const { return dynamic_; }
  uint64_t peak() const { return peak_; }
  // Room left under the cap (UINT64_MAX without a cap).
  uint64_t headroom() const;
  bool fits(uint64_t more) const { return more <= headroom(); }

  // Static pins (whole regions, before boot).
  void charge_static(uint64_t bytes);
  void release_static(uint64_t bytes);
  // Fault-driven pins of fault region `region` (index given by the FaultEngine).
  void charge(uint32_t region, uint64_t bytes);
  void release(uint32_t region, uint64_t bytes);
  uint64_t region_bytes(uint32_t region) const { return region < regions_.size() ? regions_[region] : 0; }

  struct DeviceStats {
    uint64_t faults = 0;        // fault records from this device
    uint64_t groups = 0;        // fault groups (one answer each)
    uint64_t bytes_mapped = 0;  // bytes mapped because of its faults (cumulative)
    uint64_t invalid = 0;       // groups answered INVALID
  };
  // One call per fault group of the device.
  void attribute(uint32_t dev_id, uint64_t faults, uint64_t bytes_mapped, uint64_t invalid);
  const std::map<uint32_t, DeviceStats>& devices() const { return devices_; }

 private:
  void note_peak();

  uint64_t limit_ = 0;
  uint64_t static_ = 0;
  uint64_t dynamic_ = 0;
  uint64_t peak_ = 0;
  std::vector<uint64_t> regions_;
  std::map<uint32_t, DeviceStats> devices_;
};

}  // namespace pinless::iommu
