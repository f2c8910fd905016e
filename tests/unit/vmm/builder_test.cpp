// The whole builder against a scripted KVM: a synthetic bzImage boots, the "guest" (the
// KVM_RUN script) writes a boot marker, console output and an exit status, then powers off
// through ACPI. Checks the exit status, the console file, the timeline and the boot state.
#include <doctest/doctest.h>
#include <asm/bootparam.h>
#include "pinless/base/linux_kvm.h"
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <vector>

#include "../../../vmm/src/builder.h"  // builder.h and run.h are private to vmm/src
#include "../../../vmm/src/run.h"
#include "fakes/fake_kvm.h"
#include "fakes/fake_sys.h"
#include "unit/iommu/fake_iommu.h"
#include "pinless/vmm/layout.h"

using namespace pinless;
using namespace pinless::vmm;
using pinless::testing::FakeIommufd;
using pinless::testing::FakeSys;

namespace {
std::string temp_path(const char* stem) {
  char tmpl[64];
  std::snprintf(tmpl, sizeof(tmpl), "/tmp/pinless-%s-XXXXXX", stem);
  int fd = ::mkstemp(tmpl);
  REQUIRE(fd >= 0);
  ::close(fd);
  return tmpl;
}

std::string write_bzimage() {
  setup_header h{};
  h.setup_sects = 4;
  h.boot_flag = 0xaa55;
  h.header = 0x53726448;
  h.version = 0x020f;
  h.kernel_alignment = 0x200000;
  h.relocatable_kernel = 1;
  h.xloadflags = XLF_KERNEL_64;
  h.cmdline_size = 2047;
  h.initrd_addr_max = 0x7fffffff;
  h.pref_address = 0x1000000;
  h.init_size = 0x1000000;
  std::vector<uint8_t> img(5 * 512 + 4096, 0x90);
  std::memcpy(img.data() + 0x1f1, &h, sizeof(h));
  img[0x201] = 0x6a;
  std::string path = temp_path("kernel");
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<char*>(img.data()), std::streamsize(img.size()));
  return path;
}

// One guest step: an OUT of `value` to `port`, or (mmio) a 4-byte MMIO read at `addr`.
struct Step {
  uint16_t port = 0;
  uint8_t value = 0;
  uint64_t mmio_read = 0;
};

// KVM scripted for the whole builder on `sys`: every ioctl it issues succeeds, KVM_RUN plays
// `script` step by step (then -EINTR), and what the VMM did is recorded here.
struct ScriptedKvm {
  std::vector<Step> script;
  size_t step = 0;
  uint8_t* run_base = nullptr;
  kvm_regs regs{};
  std::vector<kvm_userspace_memory_region> slots;
  std::vector<uint32_t> mmio_values;  // what each MMIO read returned, in order

  explicit ScriptedKvm(FakeSys& sys, std::vector<Step> steps) : script(std::move(steps)) {
    script_kvm_vm(sys);  // Kvm::open and Vm::create
    auto ok = [](int, unsigned long, void*) { return 0; };
    // The kvm_run mapping is found below by this size.
    sys.on_ioctl(KVM_GET_VCPU_MMAP_SIZE, [](int, unsigned long, void*) { return 8192; });
    sys.on_ioctl(KVM_CREATE_VCPU, [&sys](int, unsigned long, void*) { return sys.new_fd(); });
    for (unsigned long r : std::initializer_list<unsigned long>{
             KVM_IRQ_LINE, KVM_SET_CPUID2, KVM_SET_LAPIC, KVM_GET_SREGS, KVM_SET_SREGS, KVM_SET_FPU, KVM_IOEVENTFD,
             KVM_SET_GSI_ROUTING, KVM_IRQFD}) {
      sys.on_ioctl(r, ok);
    }
    sys.on_ioctl(KVM_GET_SUPPORTED_CPUID, [](int, unsigned long, void* a) {
      auto* c = static_cast<kvm_cpuid2*>(a);
      c->nent = 1;
      c->entries[0].function = 1;
      return 0;
    });
    sys.on_ioctl(KVM_SET_MSRS, [](int, unsigned long, void* a) { return int(static_cast<kvm_msrs*>(a)->nmsrs); });
    sys.on_ioctl(KVM_SET_REGS, [this](int, unsigned long, void* a) {
      regs = *static_cast<kvm_regs*>(a);
      return 0;
    });
    sys.on_ioctl(KVM_SET_USER_MEMORY_REGION, [this](int, unsigned long, void* a) {
      slots.push_back(*static_cast<kvm_userspace_memory_region*>(a));
      return 0;
    });
    // KVM_GET_LAPIC comes after the vCPU's kvm_run mmap: find that mapping by its size.
    sys.on_ioctl(KVM_GET_LAPIC, [this, &sys](int, unsigned long, void*) {
      run_base = static_cast<uint8_t*>(sys.mapping_of_size(8192));
      return 0;
    });
    sys.on_ioctl(KVM_RUN, [this](int, unsigned long, void*) {
      REQUIRE(run_base != nullptr);
      auto* run = reinterpret_cast<kvm_run*>(run_base);
      if (step > 0 && script[step - 1].mmio_read) {
        uint32_t v = 0;
        std::memcpy(&v, run->mmio.data, 4);
        mmio_values.push_back(v);
      }
      if (step >= script.size()) return -EINTR;
      const Step& s = script[step++];
      if (s.mmio_read) {
        run->exit_reason = KVM_EXIT_MMIO;
        run->mmio.phys_addr = s.mmio_read;
        run->mmio.len = 4;
        run->mmio.is_write = 0;
        return 0;
      }
      run->exit_reason = KVM_EXIT_IO;
      run->io.direction = KVM_EXIT_IO_OUT;
      run->io.port = s.port;
      run->io.size = 1;
      run->io.count = 1;
      run->io.data_offset = 4096;
      run_base[4096] = s.value;
      return 0;
    });
  }
};

constexpr Step kPowerOff{0x3c0, (5 << 2) | 0x20};  // ACPI S5: SLP_TYP 5 | SLP_EN
}  // namespace

TEST_CASE("builder boots a scripted guest to poweroff and exits with its status") {
  FakeSys sys;
  // The guest: boot marker, "hi\n" on COM1, status 5, ACPI S5.
  ScriptedKvm kvm(sys, {{0xf4, 0x01}, {0x3f8, 'h'}, {0x3f8, 'i'}, {0x3f8, '\n'}, {0xf5, 5}, kPowerOff});
  auto& slots = kvm.slots;
  auto& regs = kvm.regs;

  VmConfig config;
  config.kernel = write_bzimage();
  config.memory.size = 64 * kMiB;
  config.seccomp = seccomp::Mode::kOff;  // a filter would bind this test process for good
  config.serial = VmConfig::Serial::kFile;
  config.serial_file = temp_path("console");
  Timeline timeline;

  // Built, the VM is paused: vCPUs exist, none has run.
  auto vm = build_microvm(config, timeline, sys);
  REQUIRE_MESSAGE(vm.has_value(), vm.error().message());
  CHECK(sys.count(KVM_CREATE_VCPU) == 1);
  CHECK(sys.count(KVM_RUN) == 0);
  CHECK_FALSE(timeline.find("first_kvm_run"));
  vm->reset();
  slots.clear();

  auto r = run_microvm(config, timeline, sys);
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->exit_status == 5);
  CHECK(r->outcome == VmState::Outcome::kPowerOff);
  CHECK(describe(*r, ExitStatusMode::kGuest).empty());  // a poweroff needs no line
  CHECK(kvm.step == kvm.script.size());
  CHECK(regs.rip == 0x100200);
  CHECK(regs.rsi == 0x7000);
  REQUIRE(slots.size() == 1);
  CHECK(slots[0].memory_size == 64 * kMiB);

  std::stringstream console;
  console << std::ifstream(config.serial_file).rdbuf();
  CHECK(console.str() == "hi\n");

  auto boot = timeline.find("guest_boot_complete");
  auto first = timeline.find("first_kvm_run");
  auto shutdown = timeline.find("guest_shutdown");
  REQUIRE(boot);
  REQUIRE(first);
  REQUIRE(shutdown);
  CHECK(*first <= *boot);
  CHECK(*boot <= *shutdown);
  for (const char* e : {"memory_ready", "kernel_loaded", "devices_ready"}) CHECK_MESSAGE(timeline.find(e), e);
  ::unlink(config.kernel.c_str());
  ::unlink(config.serial_file.c_str());
}

TEST_CASE("builder --viommu: a virtio-iommu at 00:01.0, a VIOT, guest RAM in a source IOAS, nothing left") {
  FakeSys sys;
  FakeIommufd iommufd(sys);
  const uint64_t ecam_01 = layout::kEcam.start.value() + (1u << 15);
  ScriptedKvm kvm(sys, {{.mmio_read = ecam_01}, {.mmio_read = ecam_01 + 8}, kPowerOff});
  VmConfig config;
  config.kernel = write_bzimage();
  config.memory.size = 64 * kMiB;
  config.seccomp = seccomp::Mode::kOff;  // a filter would bind this test process for good
  config.serial = VmConfig::Serial::kOff;
  config.viommu = true;
  Timeline timeline;

  auto vm = build_microvm(config, timeline, sys);
  REQUIRE_MESSAGE(vm.has_value(), vm.error().message());
  // The VIOT among the ACPI tables.
  REQUIRE(kvm.slots.size() == 1);
  const auto* ram = reinterpret_cast<const char*>(kvm.slots[0].userspace_addr);
  std::string_view acpi(ram + layout::kAcpiTables.value(), layout::kAcpiTablesMax);
  CHECK(acpi.find("VIOT") != std::string_view::npos);
  // Guest RAM mapped once (not pinned: nothing is attached) into a source IOAS, plus the empty
  // blocking IOAS.
  CHECK(iommufd.objects.size() == 2);
  size_t with_ram = 0;
  for (const auto& [ioas, m] : iommufd.maps) {
    if (m.empty()) continue;
    ++with_ram;
    CHECK(m.begin()->first == 0);
    CHECK(m.begin()->second.len == 64 * kMiB);
  }
  CHECK(with_ram == 1);
  vm->reset();
  CHECK(iommufd.objects.empty());

  // Booted: the guest finds the virtio-iommu (1af4:1057, class 08 06 00) at 00:01.0 in ECAM.
  auto r = run_microvm(config, timeline, sys);
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->outcome == VmState::Outcome::kPowerOff);
  REQUIRE(kvm.mmio_values.size() == 2);
  CHECK(kvm.mmio_values[0] == 0x10571af4u);
  CHECK((kvm.mmio_values[1] >> 8) == 0x080600u);
  CHECK(timeline.to_json().find("\"viommu\"") != std::string::npos);
  CHECK(iommufd.objects.empty());
  ::unlink(config.kernel.c_str());
}

TEST_CASE("describe: one line per way a VM ends, none for a plain poweroff") {
  RunResult r;
  r.outcome = VmState::Outcome::kReset;
  r.cause = "triple fault";
  r.exit_status = kExitReset;
  CHECK(describe(r, ExitStatusMode::kGuest) == "guest reset (triple fault); exit status 2");
  r.outcome = VmState::Outcome::kSignal;
  r.cause = "SIGTERM";
  CHECK(describe(r, ExitStatusMode::kGuest) == "SIGTERM; VM stopped");
  r.outcome = VmState::Outcome::kPowerOff;
  r.guest_status = 7;
  r.exit_status = 7;
  CHECK(describe(r, ExitStatusMode::kGuest).empty());
  r.exit_status = kExitGuestStatus;
  CHECK(describe(r, ExitStatusMode::kVmm) == "guest exit status 7");
}
