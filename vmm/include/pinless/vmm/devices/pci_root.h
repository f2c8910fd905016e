// Compatibility header: the PCI root complex lives in pci/pci_root.h (namespace
// pinless::vmm::pci); builder_devices.cpp includes it under this name. New code should
// include "pinless/vmm/pci/pci_root.h" directly.
#pragma once

#include "pinless/vmm/pci/pci_root.h"

namespace pinless::vmm::devices {
using pci::PciRoot;
}  // namespace pinless::vmm::devices
