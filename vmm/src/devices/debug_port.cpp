#include "pinless/vmm/devices/debug_port.h"

#include <algorithm>

namespace pinless::vmm::devices {

void DebugPort::read(uint64_t, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0xff);
}

void DebugPort::write(uint64_t offset, std::span<const uint8_t> data) {
  // Guest-controlled width and value: the ABI defines single-byte writes only.
  if (data.size() != 1) {
    if (bad_.allow()) {
      logger("dev")->warn("debug port: {}-byte write at {:#x} ignored (the ABI is byte-wide)",
                          data.size(), 0xf4 + offset);
    }
    return;
  }
  uint8_t v = data[0];
  if (offset == kMarker) {
    if (v == 0 || v > 0x7f) {
      if (bad_.allow()) logger("dev")->warn("debug port: marker {:#04x} out of range, ignored", v);
      return;
    }
    if (on_marker_) on_marker_(v);
  } else if (offset == kStatus) {
    logger("dev")->debug("debug port: guest exit status {}", v);
    if (on_status_) on_status_(v);
  }
}

}  // namespace pinless::vmm::devices
