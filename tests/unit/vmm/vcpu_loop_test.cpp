#include <doctest/doctest.h>
#include "pinless/base/linux_kvm.h"
#include <sys/eventfd.h>
#include <unistd.h>

#include <poll.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstring>
#include <optional>
#include <thread>

#include "fakes/fake_sys.h"
#include "pinless/vmm/kvm/vcpu_loop.h"

using namespace pinless;
using namespace pinless::vmm;
using pinless::testing::FakeSys;

namespace {
// Port 0x3c0: any write powers the VM off (a stand-in for ACPI PM).
struct PowerButton : pci::IoDevice {
  VmState* state;
  explicit PowerButton(VmState* s) : state(s) {}
  void read(uint64_t, std::span<uint8_t> d) override { std::memset(d.data(), 0, d.size()); }
  void write(uint64_t, std::span<const uint8_t> d) override {
    state->set_guest_status(d[0]);
    state->power_off();
  }
};

struct Setup {
  FakeSys sys;
  std::optional<Kvm> kvm;
  std::optional<Vm> vm;
  std::optional<Vcpu> vcpu;
  Setup() {
    sys.on_open("/dev/kvm");
    sys.on_ioctl(KVM_GET_API_VERSION, [](int, unsigned long, void*) { return 12; });
    sys.on_ioctl(KVM_CHECK_EXTENSION, [](int, unsigned long, void*) { return 1; });
    sys.on_ioctl(KVM_GET_VCPU_MMAP_SIZE, [](int, unsigned long, void*) { return 8192; });
    sys.on_ioctl(KVM_CREATE_VM, [this](int, unsigned long, void*) { return sys.new_fd(); });
    sys.on_ioctl(KVM_CREATE_VCPU, [this](int, unsigned long, void*) { return sys.new_fd(); });
    for (unsigned long r : std::initializer_list<unsigned long>{KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR,
                                                                KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2}) {
      sys.on_ioctl(r, [](int, unsigned long, void*) { return 0; });
    }
    kvm.emplace(std::move(*Kvm::open(sys)));
    vm.emplace(std::move(*Vm::create(*kvm)));
    vcpu.emplace(std::move(*Vcpu::create(*kvm, *vm, 0)));
  }
};
}  // namespace

TEST_CASE("run loop: EINTR re-checks, a device ends the VM, then the loop returns") {
  Setup s;
  VmState state;
  IoBus bus;
  PowerButton button(&state);
  REQUIRE(bus.register_pio(0x3c0, 1, &button, "power"));
  int runs = 0;
  s.sys.on_ioctl(KVM_RUN, [&](int, unsigned long, void*) {
    ++runs;
    if (runs == 1) return -EINTR;  // a stray signal
    kvm_run* run = s.vcpu->run_struct();
    run->exit_reason = KVM_EXIT_IO;
    run->io.direction = KVM_EXIT_IO_OUT;
    run->io.port = 0x3c0;
    run->io.size = 1;
    run->io.count = 1;
    run->io.data_offset = 4096;
    reinterpret_cast<uint8_t*>(run)[4096] = 9;
    return 0;
  });
  int first = 0;
  run_vcpu(*s.vcpu, bus, state, [&] { ++first; });
  CHECK(runs == 2);
  CHECK(first == 1);
  CHECK(state.outcome() == VmState::Outcome::kPowerOff);
  CHECK(state.exit_status() == 9);
}

TEST_CASE("run loop: a triple fault ends the VM with status 2 naming the vCPU") {
  Setup s;
  VmState state;
  IoBus bus;
  s.sys.on_ioctl(KVM_RUN, [&](int, unsigned long, void*) {
    s.vcpu->run_struct()->exit_reason = KVM_EXIT_SHUTDOWN;
    return 0;
  });
  run_vcpu(*s.vcpu, bus, state, nullptr);
  CHECK(state.exit_status() == 2);
  CHECK(state.cause().find("vCPU 0") != std::string::npos);
  CHECK(state.cause().find("triple fault") != std::string::npos);
}

TEST_CASE("run loop: KVM_RUN failing is a pinless failure (status 1)") {
  Setup s;
  VmState state;
  IoBus bus;
  s.sys.on_ioctl(KVM_RUN, [](int, unsigned long, void*) { return -EFAULT; });
  run_vcpu(*s.vcpu, bus, state, nullptr);
  CHECK(state.exit_status() == 1);
  CHECK(state.cause().find("KVM_RUN") != std::string::npos);
}

TEST_CASE("run loop: a stopped VM never enters KVM_RUN") {
  Setup s;
  VmState state;
  IoBus bus;
  state.interrupted(SIGTERM);
  s.sys.on_ioctl(KVM_RUN, [](int, unsigned long, void*) { return 0; });
  run_vcpu(*s.vcpu, bus, state, nullptr);
  CHECK(s.sys.count(KVM_RUN) == 0);
  CHECK(state.exit_status() == 128 + SIGTERM);
}

TEST_CASE("VmState wakes the main thread through its eventfd, once") {
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  REQUIRE(fd >= 0);
  VmState state{UniqueFd(fd)};
  uint64_t v = 0;
  CHECK(::read(fd, &v, sizeof(v)) < 0);  // nothing yet
  state.crash("x");
  state.reset("y");
  REQUIRE(::read(fd, &v, sizeof(v)) == sizeof(v));
  CHECK(v == 1);
}

TEST_CASE("VcpuThreads::stop_all kicks a vCPU blocked in KVM_RUN out and joins it") {
  Setup s;
  VmState state;
  IoBus bus;
  install_vcpu_kick_handler();
  std::atomic<int> runs{0};
  // Behaves like KVM_RUN: returns -EINTR if immediate_exit is set, else sleeps until a signal.
  // SIGUSR1 is blocked across the check and atomically unblocked by ppoll, as KVM does.
  s.sys.on_ioctl(KVM_RUN, [&](int, unsigned long, void*) {
    ++runs;
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, kVcpuKickSignal);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int r = -EINTR;
    if (__atomic_load_n(&s.vcpu->run_struct()->immediate_exit, __ATOMIC_SEQ_CST) == 0) {
      sigset_t wait = old;
      sigdelset(&wait, kVcpuKickSignal);
      ::ppoll(nullptr, 0, nullptr, &wait);
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return r;
  });
  {
    VcpuThreads threads;
    threads.start(*s.vcpu, bus, state, nullptr, nullptr);
    while (runs.load() == 0) std::this_thread::yield();  // the vCPU is (about to be) in KVM_RUN
    state.interrupted(SIGINT);
    threads.stop_all();
  }
  CHECK(state.outcome() == VmState::Outcome::kSignal);
  CHECK(s.vcpu->run_struct()->immediate_exit == 1);
}
