// MsiMessage: what an MSI or MSI-X vector writes when it fires (address, data) plus the
// requester id KVM may want with it. Produced by the device models here (MsixTable, MSI
// capabilities) and consumed by whatever routes interrupts to the guest (vmm's MsiRouter),
// so it lives below both. A plain value; thread-compatible.
#pragma once

#include <cstdint>
#include <optional>

namespace pinless::pci {

struct MsiMessage {
  uint64_t address = 0;
  uint32_t data = 0;
  std::optional<uint32_t> devid;  // requester id (bus << 8 | devfn) for KVM_MSI_VALID_DEVID
  bool operator==(const MsiMessage&) const = default;
};

}  // namespace pinless::pci
