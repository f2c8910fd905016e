// AcpiPm: the ACPI hardware-reduced power registers, registered at 0x3c0 with size 3, that
// the FADT built by acpi/tables.cpp points at:
//   +0 SLEEP_CONTROL_REG: SLP_EN (bit 5) with SLP_TYP (bits 2-4) == 5 (the _S5_ value in the
//      DSDT) calls the poweroff callback; other sleep types are refused (not advertised).
//   +1 SLEEP_STATUS_REG:  WAK_STS (bit 7), write 1 to clear.
//   +2 RESET_REG:         writing the reset value (kResetValue) calls the reset callback.
// Thread-safe: the status register is atomic; callbacks must be thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>

#include "pinless/base/log.h"
#include "pinless/pci/io_device.h"

namespace pinless::vmm::devices {

class AcpiPm final : public pci::IoDevice {
 public:
  using Fn = std::function<void()>;

  static constexpr uint64_t kSleepControl = 0;
  static constexpr uint64_t kSleepStatus = 1;
  static constexpr uint64_t kReset = 2;
  static constexpr uint8_t kSlpEn = 1 << 5;
  static constexpr uint8_t kSlpTypShift = 2;
  static constexpr uint8_t kSlpTypMask = 0x7 << kSlpTypShift;
  static constexpr uint8_t kSlpTypS5 = 5;
  static constexpr uint8_t kWakSts = 1 << 7;
  static constexpr uint8_t kResetValue = 0x01;

  AcpiPm(Fn poweroff, Fn reset) : poweroff_(std::move(poweroff)), reset_(std::move(reset)) {}

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  void write_reg(uint64_t offset, uint8_t value);

  Fn poweroff_;
  Fn reset_;
  std::atomic<uint8_t> sleep_status_{0};
  RateLimit bad_{5, 10000};
};

}  // namespace pinless::vmm::devices
