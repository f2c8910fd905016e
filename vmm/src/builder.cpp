#include "builder.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "pinless/base/log.h"
#include "pinless/base/size.h"
#include "pinless/base/sys.h"
#include "pinless/vmm/boot/boot_params.h"
#include "pinless/vmm/boot/kernel_loader.h"
#include "pinless/vmm/io_bus.h"
#include "pinless/vmm/kvm/boot_cpu.h"
#include "pinless/vmm/kvm/kvm.h"
#include "pinless/vmm/kvm/vcpu.h"
#include "pinless/vmm/kvm/vcpu_loop.h"
#include "pinless/vmm/kvm/vm.h"
#include "pinless/vmm/kvm/vm_state.h"
#include "pinless/vmm/layout.h"
#include "pinless/vmm/memory/guest_memory.h"
#include "builder_devices.h"
#include "builder_vfio.h"

namespace pinless::vmm {
namespace {

// SIGINT/SIGTERM are blocked in every thread (vCPU threads inherit the mask) and read from a
// signalfd by the main thread, so a Ctrl-C becomes an orderly stop instead of an abrupt exit.
// Restores the previous mask when destroyed.
class StopSignals {
 public:
  StopSignals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    error_ = pthread_sigmask(SIG_BLOCK, &set, &old_);
    if (error_ == 0) {
      fd_.reset(::signalfd(-1, &set, SFD_CLOEXEC));
      if (!fd_.valid()) error_ = errno;
    }
  }
  StopSignals(const StopSignals&) = delete;
  ~StopSignals() {
    if (error_ == 0 || fd_.valid()) pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  Status status() const { return error_ == 0 ? Status{} : fail("signalfd", error_, "SIGINT/SIGTERM"); }
  int fd() const { return fd_.get(); }

 private:
  sigset_t old_{};
  int error_ = 0;
  UniqueFd fd_;
};

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

// Waits until the VM ends or a stop signal arrives.
// The main thread's event loop while the guest runs: VM end (device or vCPU), stop signals,
// and the I/O page fault queue of fault-driven DMA (level-triggered; served here, never on a
// vCPU thread). A fault queue that fails ends the VM: its devices would wait forever.
void wait_for_end(VmState& state, int signal_fd, VfioSetup& dma) {
  pollfd fds[3] = {{state.wake_fd(), POLLIN, 0}, {signal_fd, POLLIN, 0}, {dma.fault_fd(), POLLIN, 0}};
  const nfds_t nfds = dma.fault_fd() >= 0 ? 3 : 2;
  while (!state.stopping()) {
    int n = ::poll(fds, nfds, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      state.fail(std::string("poll: ") + std::strerror(errno));
      break;
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo si{};
      if (::read(signal_fd, &si, sizeof(si)) == sizeof(si)) state.interrupted(int(si.ssi_signo));
    }
    if (nfds == 3 && (fds[2].revents & (POLLIN | POLLERR | POLLHUP))) {
      if (auto st = dma.on_fault_readable(); !st) state.fail("I/O page fault queue: " + st.error().message());
    }
  }
}

}  // namespace

Result<int> build_and_run(const VmConfig& config, Timeline& timeline, Sys& sys) {
  auto log = logger("vmm");

  // Before any thread exists, so that every vCPU thread inherits the blocked stop signals;
  // the kick handler must be in place before a vCPU can be kicked.
  StopSignals stop_signals;
  PINLESS_TRY_VOID(stop_signals.status());
  install_vcpu_kick_handler();
  // A console piped into a process that exits must not kill the VMM with SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);

  // KVM and the VM. Vm::create also sets the TSS/identity-map pages and creates the
  // irqchip and PIT: all of that must precede vCPU creation.
  auto vm_phase = timeline.phase("create_vm");
  Kvm kvm = PINLESS_TRY(Kvm::open(sys));
  if (config.cpus > kvm.max_vcpus()) {
    return fail("--cpus", EINVAL,
                std::to_string(config.cpus) + " vCPUs, but this host's KVM allows " +
                    std::to_string(kvm.max_vcpus()),
                "ask for at most " + std::to_string(kvm.max_vcpus()) + " vCPUs");
  }
  Vm vm = PINLESS_TRY(Vm::create(kvm));
  vm_phase.end();

  // Guest RAM, registered as one memslot per region before anything runs.
  auto mem_phase = timeline.phase("guest_memory", {{"size", format_size(config.memory.size)},
                                                   {"hugepages", config.memory.hugepages ? "on" : "off"},
                                                   {"thp", config.memory.thp ? "on" : "off"}});
  GuestMemory memory = PINLESS_TRY(GuestMemory::create(sys, config.memory));
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
  boot_in.rsdp = PINLESS_TRY(
      write_acpi_tables(memory, config.cpus, config.serial != VmConfig::Serial::kOff));
  PINLESS_TRY_VOID(boot::write_boot_params(memory, kernel, boot_in));
  PINLESS_TRY_VOID(boot_cpu::write_page_tables(memory));
  PINLESS_TRY_VOID(boot_cpu::write_gdt_idt(memory));

  // Devices. The VmState's eventfd wakes this thread when a device or vCPU ends the VM.
  int wake = sys.eventfd(0, EFD_NONBLOCK);
  if (wake < 0) return fail("eventfd", -wake, "VM stop notification");
  VmState state{UniqueFd(sys, wake)};
  IoBus bus;
  UniqueFd serial_out = PINLESS_TRY(open_serial_output(config));
  LegacyDevices devices = PINLESS_TRY(
      LegacyDevices::create(vm, bus, state, timeline, serial_out.get(), config.cpus));
  timeline.mark("devices_ready");

  // VFIO passthrough (--device vfio,...): one DMA backend for the VM, devices reset, all guest
  // RAM pinned at IOVA = GPA, BARs mapped -- before the first vCPU runs. Declared after the
  // devices, so it is torn down first (devices released and reset, then pins unmapped).
  std::unique_ptr<VfioSetup> vfio = PINLESS_TRY(VfioSetup::create(config, vm, memory, bus, timeline, sys));
  PINLESS_TRY_VOID(vfio->attach(devices.pci_root()));
  if (config.has_dma_devices()) timeline.mark("vfio_ready");

  // vCPUs: created after the irqchip (in-kernel LAPIC each); CPUID before MSRs (KVM checks
  // some MSRs against CPUID), all before the first KVM_RUN. Only vCPU 0 gets boot registers:
  // the others stay in KVM's wait-for-SIPI state until Linux starts them.
  auto vcpu_phase = timeline.phase("create_vcpus", {{"count", std::to_string(config.cpus)}});
  std::vector<kvm_cpuid_entry2> cpuid = PINLESS_TRY(kvm.supported_cpuid());
  std::vector<std::unique_ptr<Vcpu>> vcpus;
  const auto msrs = boot_cpu::boot_msrs();
  for (uint32_t id = 0; id < config.cpus; ++id) {
    auto vcpu = std::make_unique<Vcpu>(PINLESS_TRY(Vcpu::create(kvm, vm, id)));
    PINLESS_TRY_VOID(vcpu->set_cpuid(cpuid, config.cpus, kvm.has_tsc_deadline_timer()));
    PINLESS_TRY_VOID(vcpu->set_msrs(msrs));
    PINLESS_TRY_VOID(vcpu->setup_lints());
    if (id == 0) PINLESS_TRY_VOID(vcpu->setup_boot_cpu(kernel.entry, layout::kZeroPage));
    vcpus.push_back(std::move(vcpu));
  }
  vcpu_phase.end();

  // Run. `threads` is declared last so it is destroyed (vCPUs stopped and joined) before
  // anything they use.
  VcpuThreads threads;
  for (auto& vcpu : vcpus) {
    std::function<void()> first;
    if (vcpu->id() == 0) first = [&timeline] { timeline.mark_once("first_kvm_run"); };
    threads.start(*vcpu, bus, state, std::move(first));
  }
  log->info("guest started: {} vCPU(s), {} RAM", config.cpus, format_size(config.memory.size));
  wait_for_end(state, stop_signals.fd(), *vfio);
  if (state.outcome() != VmState::Outcome::kSignal && state.outcome() != VmState::Outcome::kFailed) {
    timeline.mark("guest_shutdown");
  }
  threads.stop_all();
  vfio->finish(timeline);

  const int exit_status = state.exit_status(config.exit_status);
  switch (state.outcome()) {
    case VmState::Outcome::kPowerOff:
      log->info("guest powered off (status {})", state.guest_status().value_or(0));
      // --exit-status vmm: the guest's own value, in the one line docs/guest-abi.md promises.
      if (exit_status == kExitGuestStatus && config.exit_status == ExitStatusMode::kVmm) {
        std::fprintf(stderr, "pinless: guest exit status %d\n", int(*state.guest_status()));
      }
      break;
    case VmState::Outcome::kReset:
      std::fprintf(stderr, "pinless: guest reset (%s); exit status %d\n", state.cause().c_str(), exit_status);
      break;
    case VmState::Outcome::kCrash:
      std::fprintf(stderr, "pinless: guest crashed (%s); exit status %d\n", state.cause().c_str(), exit_status);
      break;
    case VmState::Outcome::kSignal:
      std::fprintf(stderr, "pinless: %s; VM stopped\n", state.cause().c_str());
      break;
    case VmState::Outcome::kFailed:
      std::fprintf(stderr, "pinless: %s\n", state.cause().c_str());
      break;
    case VmState::Outcome::kRunning:
      break;
  }
  return exit_status;
}

}  // namespace pinless::vmm
