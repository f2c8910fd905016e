#include "builder.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "pinless/base/log.h"
#include "pinless/base/size.h"
#include "pinless/pci/bar_allocator.h"
#include "pinless/vmm/boot/boot_params.h"
#include "pinless/vmm/boot/kernel_loader.h"
#include "pinless/vmm/kvm/boot_cpu.h"
#include "pinless/vmm/layout.h"
#include "microvm.h"

namespace pinless::vmm {
namespace {

Result<UniqueFd> open_serial_output(const VmConfig& config) {
  switch (config.serial) {
    case VmConfig::Serial::kStdio: {
      // Our own copy, so closing the device's fd never closes stdout. The UART makes its fd
      // non-blocking, and a dup would share that flag with the shell's terminal or pipe
      // (the open file description), so a tty, pipe or FIFO is opened anew, non-blocking
      // from the start (which also cannot wait for a FIFO reader). A regular file is dup'ed:
      // it never blocks, and a dup keeps the redirection's offset and O_APPEND. Sockets
      // cannot be reopened; the UART then sets the flag on the dup and restores it at exit.
      struct stat st {};
      if (::fstat(STDOUT_FILENO, &st) == 0 && !S_ISREG(st.st_mode)) {
        int fd = ::open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd >= 0) return UniqueFd(fd);
      }
      if (int fd = ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3); fd >= 0) return UniqueFd(fd);
      return fail_errno("dup", "stdout for the serial console");
    }
    case VmConfig::Serial::kFile: {
      int fd = ::open(config.serial_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) return fail_errno("open", "--serial file=" + config.serial_file);
      return UniqueFd(fd);
    }
    case VmConfig::Serial::kOff:
      return UniqueFd();
  }
  return UniqueFd();
}

}  // namespace

Result<std::unique_ptr<MicroVm>> build_microvm(const VmConfig& config, Timeline& timeline, Sys& sys) {
  // Owned from here: an early return destroys what exists so far, in reverse order.
  std::unique_ptr<MicroVm> m(new MicroVm(config, timeline, sys));

  // KVM and the VM. Vm::create also sets the TSS/identity-map pages and creates the
  // irqchip and PIT: all of that must precede vCPU creation.
  auto vm_phase = timeline.phase("create_vm");
  const Kvm& kvm = m->kvm_.emplace(PINLESS_TRY(Kvm::open(sys)));
  if (config.cpus > kvm.max_vcpus()) {
    return fail("--cpus", EINVAL,
                std::to_string(config.cpus) + " vCPUs, but this host's KVM allows " +
                    std::to_string(kvm.max_vcpus()),
                "ask for at most " + std::to_string(kvm.max_vcpus()) + " vCPUs");
  }
  Vm& vm = m->vm_.emplace(PINLESS_TRY(Vm::create(kvm)));
  vm_phase.end();

  // Guest RAM, registered as one memslot per region before anything runs.
  auto mem_phase = timeline.phase("guest_memory", {{"size", format_size(config.memory.size)},
                                                   {"hugepages", config.memory.hugepages ? "on" : "off"},
                                                   {"thp", config.memory.thp ? "on" : "off"}});
  GuestMemory& memory = m->memory_.emplace(PINLESS_TRY(GuestMemory::create(sys, config.memory)));
  PINLESS_TRY_VOID(vm.map_guest_memory(memory));
  mem_phase.end();
  timeline.mark("memory_ready");

  // Kernel first, then the initrd, which goes as high as possible above the kernel's end.
  // The files stay mapped only while they are copied.
  boot::LoadedKernel kernel;
  {
    boot::MappedFile kernel_file = PINLESS_TRY(boot::MappedFile::open(config.kernel, "kernel"));
    kernel = PINLESS_TRY(boot::load_kernel(kernel_file.bytes(), memory));
  }
  timeline.mark("kernel_loaded");
  boot::BootParamsInput boot_in;
  boot_in.cmdline = config.cmdline;
  if (!config.initrd.empty()) {
    boot::MappedFile initrd_file = PINLESS_TRY(boot::MappedFile::open(config.initrd, "initrd"));
    Range<Gpa> where = PINLESS_TRY(boot::place_initrd(initrd_file.size(), kernel, memory.layout()));
    PINLESS_TRY_VOID(memory.write(where.start, initrd_file.bytes()));
    boot_in.initrd = where;
    timeline.mark("initrd_loaded");
  }

  // Firmware-ish tables: ACPI at 0xe0000 (RSDP first), then the zero page that points at it,
  // then the long-mode page tables and GDT vCPU 0 starts on.
  std::optional<acpi::ViotConfig> viot;
  if (config.viommu) viot = ViommuSetup::viot();
  boot_in.rsdp = PINLESS_TRY(
      write_acpi_tables(memory, config.cpus, config.serial != VmConfig::Serial::kOff, viot));
  PINLESS_TRY_VOID(boot::write_boot_params(memory, kernel, boot_in));
  PINLESS_TRY_VOID(boot_cpu::write_page_tables(memory));
  PINLESS_TRY_VOID(boot_cpu::write_gdt_idt(memory));

  // Devices. The VmState's eventfd wakes the event loop when a device or vCPU ends the VM.
  int wake = sys.eventfd(0, EFD_NONBLOCK);
  if (wake < 0) return fail("eventfd", -wake, "VM stop notification");
  VmState& state = m->state_.emplace(UniqueFd(sys, wake));
  m->serial_out_ = PINLESS_TRY(open_serial_output(config));
  LegacyDevices& devices = m->devices_.emplace(PINLESS_TRY(
      LegacyDevices::create(vm, m->bus_, state, timeline, m->serial_out_.get(), config.cpus)));
  timeline.mark("devices_ready");

  // VFIO passthrough (--device vfio,...): one DMA backend for the VM, devices reset, guest RAM
  // made reachable for DMA per --ram-region, BARs mapped -- before the first vCPU runs.
  // Declared after the devices, so it is torn down first (devices released and reset, then
  // mappings and pins undone).
  // One MSI routing table and one BAR allocator for every PCI device.
  const auto& lay = memory.layout();
  pci::PciBarAllocator bars(lay.pci_mmio32, lay.pci_mmio64, layout::kPciIoPorts);
  MsiRouter& router = *(m->msi_ = std::make_unique<MsiRouter>(sys, vm.fd()));
  m->vfio_ = PINLESS_TRY(VfioSetup::create(config, vm, memory, m->bus_, router, bars, timeline, sys));
  // --viommu: the virtio-iommu takes 00:01.0 before the VFIO devices take the next slots, and
  // then learns which endpoint each of them is (their BDFs, as the VIOT says).
  if (config.viommu) {
    ViommuSetup::Env env{&sys, &vm, &m->bus_, &memory, &router, &bars, &devices.pci_root()};
    m->viommu_ = PINLESS_TRY(ViommuSetup::create(env, *m->vfio_, timeline));
  }
  PINLESS_TRY_VOID(m->vfio_->attach(devices.pci_root()));
  if (m->viommu_) PINLESS_TRY_VOID(m->viommu_->add_endpoints(*m->vfio_));
  if (config.has_dma_devices()) timeline.mark("vfio_ready");

  // vCPUs: created after the irqchip (in-kernel LAPIC each); CPUID before MSRs (KVM checks
  // some MSRs against CPUID), all before the first KVM_RUN. Only vCPU 0 gets boot registers:
  // the others stay in KVM's wait-for-SIPI state until Linux starts them.
  auto vcpu_phase = timeline.phase("create_vcpus", {{"count", std::to_string(config.cpus)}});
  std::vector<kvm_cpuid_entry2> cpuid = PINLESS_TRY(kvm.supported_cpuid());
  const auto msrs = boot_cpu::boot_msrs();
  for (uint32_t id = 0; id < config.cpus; ++id) {
    auto vcpu = std::make_unique<Vcpu>(PINLESS_TRY(Vcpu::create(kvm, vm, id)));
    PINLESS_TRY_VOID(vcpu->set_cpuid(cpuid, config.cpus, kvm.has_tsc_deadline_timer()));
    PINLESS_TRY_VOID(vcpu->set_msrs(msrs));
    PINLESS_TRY_VOID(vcpu->setup_lints());
    if (id == 0) PINLESS_TRY_VOID(vcpu->setup_boot_cpu(kernel.entry, layout::kZeroPage));
    m->vcpus_.push_back(std::move(vcpu));
  }
  vcpu_phase.end();
  return m;
}

}  // namespace pinless::vmm
