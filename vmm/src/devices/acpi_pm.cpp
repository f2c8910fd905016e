#include "pinless/vmm/devices/acpi_pm.h"

namespace pinless::vmm::devices {

void AcpiPm::read(uint64_t offset, std::span<uint8_t> data) {
  // Guest-controlled offset and width: byte registers, one per port; a wider access reads
  // each register in turn, anything past the last reads 0xff.
  for (size_t i = 0; i < data.size(); ++i) {
    uint64_t off = offset + i;
    if (off == kSleepStatus) {
      data[i] = sleep_status_.load();
    } else if (off == kSleepControl || off == kReset) {
      data[i] = 0;  // write-only in effect
    } else {
      data[i] = 0xff;
    }
  }
}

void AcpiPm::write(uint64_t offset, std::span<const uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i) write_reg(offset + i, data[i]);
}

void AcpiPm::write_reg(uint64_t offset, uint8_t value) {
  switch (offset) {
    case kSleepControl: {
      if ((value & kSlpEn) == 0) return;  // SLP_TYP may be written on its own first
      uint8_t typ = (value & kSlpTypMask) >> kSlpTypShift;
      if (typ == kSlpTypS5) {
        logger("dev")->info("acpi: guest entered S5 (poweroff)");
        if (poweroff_) poweroff_();
      } else if (bad_.allow()) {
        logger("dev")->warn("acpi: sleep type {} requested; only S5 is supported, ignored", typ);
      }
      return;
    }
    case kSleepStatus:
      sleep_status_.fetch_and(uint8_t(~(value & kWakSts)));  // write 1 to clear
      return;
    case kReset:
      if (value == kResetValue) {
        logger("dev")->info("acpi: guest wrote the reset register");
        if (reset_) reset_();
      } else if (bad_.allow()) {
        logger("dev")->warn("acpi: reset register written with {:#04x}, ignored", value);
      }
      return;
    default:
      if (bad_.allow()) logger("dev")->warn("acpi: write past the PM registers ignored");
      return;
  }
}

}  // namespace pinless::vmm::devices
