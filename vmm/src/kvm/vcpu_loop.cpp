#include "pinless/vmm/kvm/vcpu_loop.h"

#include <pthread.h>
#include <signal.h>

#include <cstring>

#include "pinless/base/log.h"
#include "pinless/vmm/kvm/exit.h"

namespace pinless::vmm {
namespace {
void kick_handler(int) {}
}  // namespace

void install_vcpu_kick_handler() {
  struct sigaction sa {};
  sa.sa_handler = kick_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return -EINTR
  sigaction(kVcpuKickSignal, &sa, nullptr);
}

void run_vcpu(Vcpu& vcpu, IoBus& bus, VmState& state, const std::function<void()>& before_first_run) {
  auto log = logger("kvm");
  // The main thread blocks SIGINT/SIGTERM before creating vCPU threads, so they are handled
  // there; the kick signal must be deliverable here.
  sigset_t kick;
  sigemptyset(&kick);
  sigaddset(&kick, kVcpuKickSignal);
  pthread_sigmask(SIG_UNBLOCK, &kick, nullptr);

  bool first = true;
  while (!state.stopping()) {
    if (first && before_first_run) before_first_run();
    first = false;
    int r = vcpu.run();
    if (r == -EINTR || r == -EAGAIN) continue;  // kicked, or a signal: re-check the flag
    if (r < 0) {
      state.fail("vCPU " + std::to_string(vcpu.id()) + ": KVM_RUN: " + std::strerror(-r));
      break;
    }
    ExitAction a = handle_exit(*vcpu.run_struct(), vcpu.run_size(), bus);
    switch (a.kind) {
      case ExitAction::Kind::kContinue:
        break;
      case ExitAction::Kind::kPowerOff:
        state.power_off(a.reason);
        break;
      case ExitAction::Kind::kReset:
        state.reset("vCPU " + std::to_string(vcpu.id()) + ": " + a.reason);
        break;
      case ExitAction::Kind::kCrash:
        state.crash("vCPU " + std::to_string(vcpu.id()) + ": " + a.reason);
        break;
    }
  }
  log->debug("vCPU {} stopped", vcpu.id());
}

void VcpuThreads::start(Vcpu& vcpu, IoBus& bus, VmState& state,
                        std::function<void()> before_first_run) {
  Vcpu* v = &vcpu;
  threads_.push_back({v, &state, std::thread([v, &bus, &state, fn = std::move(before_first_run)] {
                        pthread_setname_np(pthread_self(), ("vcpu" + std::to_string(v->id())).c_str());
                        run_vcpu(*v, bus, state, fn);
                      })});
}

void VcpuThreads::stop_all() {
  for (auto& t : threads_) {
    if (!t.thread.joinable()) continue;
    t.state->fail("vCPUs stopped before the VM ended");
    // immediate_exit covers a thread between its flag check and KVM_RUN; the signal covers
    // one already inside KVM_RUN.
    t.vcpu->request_exit();
    pthread_kill(t.thread.native_handle(), kVcpuKickSignal);
  }
  for (auto& t : threads_) {
    if (t.thread.joinable()) t.thread.join();
  }
  threads_.clear();
}

}  // namespace pinless::vmm
