// The legacy PC devices of a pinless guest and their wiring: COM1, i8042 (reset), the debug
// port (timeline markers, guest exit status), ACPI PM (poweroff/reset), the PCI root (ECAM
// and CF8/CFC), and the ACPI tables at 0xe0000. The device classes live in devices/ (another
// owner); this file only constructs them, connects their callbacks to VmState/Timeline/Vm and
// registers them on the IoBus. Owns the devices. Main thread only (the devices themselves
// run on vCPU threads), except press_power_button, which is thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "pinless/base/result.h"
#include "pinless/vmm/acpi/viot.h"
#include "pinless/vmm/io_bus.h"
#include "pinless/vmm/kvm/vm.h"
#include "pinless/vmm/kvm/vm_state.h"
#include "pinless/vmm/memory/guest_memory.h"
#include "pinless/pci/pci_root.h"
#include "pinless/vmm/timeline/timeline.h"

namespace pinless::vmm {

// Writes the ACPI tables (RSDP, XSDT, FADT, DSDT, MADT, MCFG, and a VIOT when `viot` is
// given) at layout::kAcpiTables and returns the RSDP address. `serial`: whether COM1 exists
// (it is then described in the DSDT). An invalid `viot` is refused (EINVAL), never written.
[[nodiscard]] Result<Gpa> write_acpi_tables(const GuestMemory& memory, uint32_t cpus, bool serial,
                                            const std::optional<acpi::ViotConfig>& viot = std::nullopt);

class LegacyDevices {
 public:
  // `serial_fd` < 0: no UART at all (--serial off). Not owned.
  [[nodiscard]] static Result<LegacyDevices> create(Vm& vm, IoBus& bus, VmState& state,
                                                    Timeline& timeline, int serial_fd,
                                                    uint32_t cpus);
  LegacyDevices(LegacyDevices&&) noexcept;
  ~LegacyDevices();

  // The PCI root (bus 0), for devices plugged in after the legacy ones (VFIO passthrough).
  pci::PciRoot& pci_root();

  // Presses the ACPI power button (the DSDT's \_SB.PWRB, signalled through the Generic Event
  // Device on layout::kGedIrq): a guest with ACPI button support then shuts down and powers
  // off by itself (S5), which ends the VM like any guest poweroff. A guest that ignores it
  // keeps running. Thread-safe; may be called from any thread while the vCPUs run.
  void press_power_button();

 private:
  struct Impl;
  explicit LegacyDevices(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pinless::vmm
