// DebugPort: the boot-timer / exit-status port pair of docs/guest-abi.md, registered at 0xf4
// with size 2. A byte written to 0xf4 is a marker (0x01 boot complete, 0x02..0x7f guest
// defined), a byte written to 0xf5 is the guest's exit status. Both ports read 0xff.
// The ABI is byte-wide: wider accesses, and markers outside 0x01..0x7f, are ignored with a
// rate-limited warning.
// Thread-safe: no state of its own; the callbacks must be thread-safe (any vCPU may write).
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "pinless/base/log.h"
#include "pinless/pci/io_device.h"

namespace pinless::vmm::devices {

class DebugPort final : public pci::IoDevice {
 public:
  using MarkerFn = std::function<void(uint8_t marker)>;
  using StatusFn = std::function<void(uint8_t status)>;

  static constexpr uint64_t kMarker = 0;  // 0xf4
  static constexpr uint64_t kStatus = 1;  // 0xf5

  DebugPort(MarkerFn on_marker, StatusFn on_status)
      : on_marker_(std::move(on_marker)), on_status_(std::move(on_status)) {}

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  MarkerFn on_marker_;
  StatusFn on_status_;
  RateLimit bad_{5, 10000};
};

}  // namespace pinless::vmm::devices
