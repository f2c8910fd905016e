#include "builder_devices.h"

#include <algorithm>
#include <functional>
#include <mutex>

#include "pinless/base/log.h"
#include "pinless/vmm/devices/acpi_pm.h"
#include "pinless/vmm/devices/debug_port.h"
#include "pinless/vmm/devices/i8042.h"
#include "pinless/vmm/devices/serial.h"
#include "pinless/vmm/layout.h"

#include "pinless/vmm/acpi/tables.h"
#include "pinless/pci/pci_root.h"

namespace pinless::vmm {
namespace {
// An interrupt line of the in-kernel PIC/IOAPIC, driven by level (devices report changes).
std::function<void(bool)> irq_line(Vm& vm, uint32_t gsi) {
  return [&vm, gsi](bool level) {
    if (auto r = vm.set_irq_line(gsi, level); !r) {
      logger("dev")->error("IRQ {}: {}", gsi, r.error().message());
    }
  };
}
}  // namespace

struct LegacyDevices::Impl {
  std::unique_ptr<devices::Serial8250> serial;
  std::unique_ptr<devices::I8042> i8042;
  std::unique_ptr<devices::DebugPort> debug_port;
  std::unique_ptr<devices::AcpiPm> acpi_pm;
  std::unique_ptr<pci::PciRoot> pci;
  // Stands for the in-kernel IOAPIC and LAPIC on the bus (KVM answers their accesses, so it
  // sees almost nothing: reads all-ones, drops writes). The claim is what matters: the bus
  // then refuses a guest BAR placed over them, which as a memslot would shadow them.
  struct InKernel final : pci::IoDevice {
    void read(uint64_t, std::span<uint8_t> data) override { std::fill(data.begin(), data.end(), 0xff); }
    void write(uint64_t, std::span<const uint8_t>) override {}
  } in_kernel;
  std::function<void(bool)> ged_line;  // the GED's interrupt (the power button)
  std::mutex ged_mutex;  // one press at a time: a pulse's two edges must not interleave
};

LegacyDevices::LegacyDevices(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LegacyDevices::LegacyDevices(LegacyDevices&&) noexcept = default;
LegacyDevices::~LegacyDevices() = default;
pci::PciRoot& LegacyDevices::pci_root() { return *impl_->pci; }

void LegacyDevices::press_power_button() {
  std::lock_guard lock(impl_->ged_mutex);
  logger("dev")->info("power button pressed");
  // The GED's interrupt is edge-triggered: the rising edge is the event, and lowering the
  // line again at once readies it for the next press.
  impl_->ged_line(true);
  impl_->ged_line(false);
}

Result<Gpa> write_acpi_tables(const GuestMemory& memory, uint32_t cpus, bool serial,
                              const std::optional<acpi::ViotConfig>& viot) {
  acpi::AcpiConfig acpi = acpi::AcpiConfig::for_layout(memory.layout(), cpus);
  if (!serial) acpi.serial_port = 0;  // --serial off: no UART, so none in the DSDT either
  if (viot) {
    PINLESS_TRY_VOID(acpi::validate(*viot));  // build_acpi_tables aborts on an invalid one
    acpi.viot = *viot;
  }
  std::vector<uint8_t> tables = acpi::build_acpi_tables(acpi, layout::kAcpiTables);
  if (tables.size() > layout::kAcpiTablesMax) {
    return fail("ACPI tables", E2BIG, std::to_string(tables.size()) + " bytes do not fit at 0xe0000");
  }
  PINLESS_TRY_VOID(memory.write(layout::kAcpiTables, tables));
  logger("boot")->debug("ACPI tables: {} bytes at {:#x}", tables.size(), layout::kAcpiTables.value());
  return layout::kAcpiTables;  // RSDP first
}

Result<LegacyDevices> LegacyDevices::create(Vm& vm, IoBus& bus, VmState& state, Timeline& timeline,
                                            int serial_fd, uint32_t cpus) {
  (void)cpus;
  auto impl = std::make_unique<Impl>();
  // Callbacks capture vm/state/timeline by reference: the builder declares them before the
  // devices, so they outlive every device (and every vCPU thread, which is joined first).
  if (serial_fd >= 0) {
    impl->serial = std::make_unique<devices::Serial8250>(serial_fd, irq_line(vm, layout::kCom1Irq));
    PINLESS_TRY_VOID(bus.register_pio(layout::kCom1Port, layout::kCom1Size, impl->serial.get(), "serial"));
  }
  impl->i8042 = std::make_unique<devices::I8042>(
      [&state] { state.reset("i8042 reset command (a reboot, or a kernel panic with panic=-1)"); },
      irq_line(vm, layout::kI8042KeyboardIrq));
  PINLESS_TRY_VOID(bus.register_pio(layout::kI8042Port, layout::kI8042Size, impl->i8042.get(), "i8042"));
  impl->debug_port = std::make_unique<devices::DebugPort>(
      [&timeline](uint8_t marker) { timeline.guest_marker(marker); },
      [&state](uint8_t status) { state.set_guest_status(status); });
  PINLESS_TRY_VOID(bus.register_pio(layout::kDebugPort, layout::kDebugPortSize,
                                    impl->debug_port.get(), "debug-port"));
  impl->acpi_pm = std::make_unique<devices::AcpiPm>(
      [&state] { state.power_off("guest powered off (ACPI S5)"); },
      [&state] { state.reset("ACPI reset register (a reboot)"); });
  PINLESS_TRY_VOID(bus.register_pio(layout::kAcpiPmPort, layout::kAcpiPmSize, impl->acpi_pm.get(), "acpi-pm"));
  // The power button has no registers: only the GED's interrupt (see press_power_button).
  impl->ged_line = irq_line(vm, layout::kGedIrq);
  // PCI config space: ECAM over the whole window (the MCFG points there) and CF8/CFC.
  impl->pci = std::make_unique<pci::PciRoot>();
  PINLESS_TRY_VOID(bus.register_mmio(layout::kEcam.start, layout::kEcam.size, &impl->pci->ecam(), "pci-ecam"));
  PINLESS_TRY_VOID(bus.register_pio(layout::kPciConfigPort, layout::kPciConfigSize,
                                    &impl->pci->config_io(), "pci-cf8"));
  PINLESS_TRY_VOID(bus.register_mmio(layout::kIoapic, layout::kIoapicSize, &impl->in_kernel, "ioapic (in-kernel)"));
  PINLESS_TRY_VOID(bus.register_mmio(layout::kLapic, layout::kLapicMsiSize, &impl->in_kernel, "lapic/msi (in-kernel)"));
  return LegacyDevices(std::move(impl));
}

}  // namespace pinless::vmm
