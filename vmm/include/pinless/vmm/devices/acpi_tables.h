// Compatibility header: the ACPI table builder lives in acpi/tables.h (namespace
// pinless::vmm::acpi); builder_devices.cpp includes it under this name. New code should
// include "pinless/vmm/acpi/tables.h" directly.
#pragma once

#include "pinless/vmm/acpi/tables.h"

namespace pinless::vmm::devices {
using acpi::AcpiConfig;
using acpi::build_acpi_tables;
}  // namespace pinless::vmm::devices
