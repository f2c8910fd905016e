#include "pinless/vmm/check/kvm_speed.h"

#include <pthread.h>
#include <signal.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "pinless/base/clock.h"
#include "pinless/vmm/kvm/boot_cpu.h"
#include "pinless/vmm/kvm/vcpu.h"
#include "pinless/vmm/kvm/vcpu_loop.h"
#include "pinless/vmm/kvm/vm.h"
#include "pinless/vmm/memory/guest_memory.h"

namespace pinless::vmm::check {
namespace {

constexpr Gpa kCodeGpa{0x10000};
// mov rcx, -1 ; l: dec rcx ; jnz l ; hlt   (the loop never ends on its own: 2^64 iterations)
constexpr std::array<uint8_t, 13> kLoop = {
    0x48, 0xc7, 0xc1, 0xff, 0xff, 0xff, 0xff,  // mov rcx, -1 (sign-extended imm32)
    0x48, 0xff, 0xc9,                          // dec rcx
    0x75, 0xfb,                                // jnz -5
    0xf4,                                      // hlt
};

double ms_between(uint64_t t0_ns, uint64_t t1_ns) { return double(t1_ns - t0_ns) / 1e6; }

// Runs the vCPU until a kick `ms` from now. Returns KVM_RUN's result (-EINTR when kicked).
int run_for(Vcpu& vcpu, double ms) {
  std::atomic<bool> done{false};
  pthread_t self = pthread_self();
  vcpu.run_struct()->immediate_exit = 0;
  std::thread kicker([&] {
    auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(int64_t(ms * 1000));
    while (!done.load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    // immediate_exit covers a kick that lands before KVM_RUN is entered; the signal one
    // that lands inside it. Repeat until the run has returned.
    while (!done.load()) {
      vcpu.request_exit();
      pthread_kill(self, kVcpuKickSignal);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  int r = vcpu.run();
  done.store(true);
  kicker.join();
  vcpu.run_struct()->immediate_exit = 0;
  return r;
}

Result<uint64_t> read_rcx(Sys& sys, Vcpu& vcpu) {
  kvm_regs regs{};
  PINLESS_TRY(sys_ioctl(sys, vcpu.fd(), KVM_GET_REGS, &regs, "KVM_GET_REGS"));
  return regs.rcx;
}

Status expect_kick(Vcpu& vcpu, int r, const char* phase) {
  if (r == -EINTR) return {};
  if (r < 0) return fail("KVM_RUN", -r, std::string("speed probe ") + phase);
  return fail("KVM_RUN", 0, std::string("speed probe ") + phase,
              "the probe guest exited with reason " + std::to_string(vcpu.run_struct()->exit_reason) +
                  " instead of looping until kicked");
}

}  // namespace

double host_loop_rate(double budget_ms) {
  constexpr uint64_t kChunk = 1 << 20;
  uint64_t done = 0;
  uint64_t t0 = monotonic_ns();
  uint64_t t1 = t0;
  do {
    uint64_t n = kChunk;
    asm volatile("1: dec %0\n\tjnz 1b" : "+r"(n) : : "cc");
    done += kChunk;
    t1 = monotonic_ns();
  } while (ms_between(t0, t1) < budget_ms);
  return double(done) / (double(t1 - t0) / 1e9);
}

Result<SpeedFacts> measure_kvm_speed(const Kvm& kvm, double budget_ms) {
  Sys& sys = kvm.sys();
  GuestMemory mem = PINLESS_TRY(GuestMemory::create(sys, MemoryConfig{64 * kMiB, false, false}));
  Vm vm = PINLESS_TRY(Vm::create(kvm));
  PINLESS_TRY_VOID(vm.map_guest_memory(mem));
  PINLESS_TRY_VOID(boot_cpu::write_page_tables(mem));
  PINLESS_TRY_VOID(boot_cpu::write_gdt_idt(mem));
  PINLESS_TRY_VOID(mem.write(kCodeGpa, kLoop));
  Vcpu vcpu = PINLESS_TRY(Vcpu::create(kvm, vm, 0));
  // Long mode needs CPUID.LM in the guest's CPUID (KVM checks it for EFER.LME).
  PINLESS_TRY_VOID(vcpu.set_cpuid(PINLESS_TRY(kvm.supported_cpuid()), 1, false));
  PINLESS_TRY_VOID(vcpu.setup_boot_cpu(kCodeGpa, layout::kZeroPage));

  install_vcpu_kick_handler();
  sigset_t kick;
  sigemptyset(&kick);
  sigaddset(&kick, kVcpuKickSignal);
  sigset_t old;
  pthread_sigmask(SIG_UNBLOCK, &kick, &old);
  struct Restore {
    sigset_t* old;
    ~Restore() { pthread_sigmask(SIG_SETMASK, old, nullptr); }
  } restore{&old};

  SpeedFacts s;
  double host_before = host_loop_rate(budget_ms);
  // Warm-up: the first entry faults in guest pages and loads the vCPU.
  PINLESS_TRY_VOID(expect_kick(vcpu, run_for(vcpu, budget_ms / 6), "warm-up"));
  uint64_t rcx0 = PINLESS_TRY(read_rcx(sys, vcpu));
  uint64_t t0 = monotonic_ns();
  int r = run_for(vcpu, budget_ms);
  uint64_t t1 = monotonic_ns();
  PINLESS_TRY_VOID(expect_kick(vcpu, r, "run"));
  uint64_t rcx1 = PINLESS_TRY(read_rcx(sys, vcpu));
  double host_after = host_loop_rate(budget_ms);

  s.guest_ms = ms_between(t0, t1);
  s.guest_rate = double(rcx0 - rcx1) / (s.guest_ms / 1e3);
  // The better of two host runs, so that a host preempted once does not flatter the guest.
  s.host_rate = std::max(host_before, host_after);
  s.host_ms = budget_ms;
  return s;
}

}  // namespace pinless::vmm::check
