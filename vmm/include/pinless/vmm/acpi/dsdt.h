// The DSDT of a pinless guest, in AML built with aml.h:
//   \_SB.PCI0  PCIe host bridge (PNP0A08, _CID PNP0A03), segment 0, bus range, the CF8 ports,
//              I/O window and 32/64-bit memory windows in _CRS
//   \_SB.MRES  motherboard resources (PNP0C02) reserving the ECAM, which Linux requires
//              before it trusts MCFG
//   \_SB.COM1  16550 UART (PNP0501) with its I/O ports and IRQ
//   \_SB.GED0  Generic Event Device (ACPI0013) on AcpiConfig::ged_irq; its _EVT notifies PWRB
//   \_SB.PWRB  the power button (PNP0C0C), pressed by LegacyDevices::press_power_button
//   \_S5_      the soft-off sleep type that devices::AcpiPm recognises
// Pure function; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "pinless/vmm/acpi/tables.h"

namespace pinless::vmm::acpi {

// SLP_TYP value of \_S5_ (devices::AcpiPm::kSlpTypS5 must match).
constexpr uint8_t kS5SleepType = 5;

std::vector<uint8_t> build_dsdt(const AcpiConfig& config);

}  // namespace pinless::vmm::acpi
