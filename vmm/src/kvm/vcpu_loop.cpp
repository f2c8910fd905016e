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

void run_vcpu(Vcpu& vcpu, IoBus& bus, VmState& state, const std::function<void()>& before_first_run,
              PauseGate* gate, ExitCounters* exits) {
  auto log = logger("kvm");
  // The main thread blocks SIGINT/SIGTERM before creating vCPU threads, so they are handled
  // there; the kick signal must be deliverable here.
  sigset_t kick;
  sigemptyset(&kick);
  sigaddset(&kick, kVcpuKickSignal);
  pthread_sigmask(SIG_UNBLOCK, &kick, nullptr);

  bool first = true;
  while (!state.stopping()) {
    if (gate != nullptr) gate->wait_while_paused(state);
    if (state.stopping()) break;
    if (first && before_first_run) before_first_run();
    first = false;
    int r = vcpu.run();
    if (r == -EINTR || r == -EAGAIN) {
      // Kicked (a pause or a stop), or a signal: re-check the flags. A pause kick's
      // immediate_exit is undone here; a stop set its flag before kicking, so the check at the
      // top of the loop still sees it.
      if (exits != nullptr) exits->interrupted.fetch_add(1, std::memory_order_relaxed);
      if (gate != nullptr && !state.stopping()) vcpu.clear_exit_request();
      continue;
    }
    if (r < 0) {
      state.fail("vCPU " + std::to_string(vcpu.id()) + ": KVM_RUN: " + std::strerror(-r));
      break;
    }
    if (exits != nullptr) exits->count(vcpu.run_struct()->exit_reason);
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

void VcpuThreads::start(Vcpu& vcpu, IoBus& bus, VmState& state, std::function<Status()> thread_setup,
                        std::function<void()> before_first_run) {
  Vcpu* v = &vcpu;
  counters_.push_back(std::make_unique<ExitCounters>());
  ExitCounters* exits = counters_.back().get();
  threads_.push_back({v, &state,
                      std::thread([this, v, &bus, &state, exits, setup = std::move(thread_setup),
                                   fn = std::move(before_first_run)] {
                        const std::string name = "vcpu" + std::to_string(v->id());
                        pthread_setname_np(pthread_self(), name.c_str());
                        if (setup) {
                          if (auto st = setup(); !st) {
                            state.fail(name + ": " + st.error().message());
                            return;
                          }
                        }
                        run_vcpu(*v, bus, state, fn, &gate_, exits);
                      })});
}

void VcpuThreads::stop_all() {
  for (auto& t : threads_) {
    if (t.thread.joinable()) t.state->fail("vCPUs stopped before the VM ended");
  }
  gate_.wake_all();  // parked vCPUs see the stop
  kick_all();
  for (auto& t : threads_) {
    if (t.thread.joinable()) t.thread.join();
  }
  threads_.clear();
}

void VcpuThreads::kick_all() {
  for (auto& t : threads_) {
    if (!t.thread.joinable()) continue;
    // immediate_exit covers a thread between its flag check and KVM_RUN; the signal covers
    // one already inside KVM_RUN.
    t.vcpu->request_exit();
    pthread_kill(t.thread.native_handle(), kVcpuKickSignal);
  }
}

bool VcpuThreads::pause(std::chrono::milliseconds timeout) {
  gate_.pause();
  kick_all();
  return gate_.wait_parked(unsigned(threads_.size()), timeout);
}

void VcpuThreads::resume() { gate_.resume(); }

VcpuThreads::ExitTotals VcpuThreads::exits() const {
  ExitTotals t;
  for (const auto& c : counters_) {
    for (size_t i = 0; i < t.by_reason.size(); ++i) t.by_reason[i] += c->by_reason[i].load(std::memory_order_relaxed);
    t.interrupted += c->interrupted.load(std::memory_order_relaxed);
    t.other += c->other.load(std::memory_order_relaxed);
  }
  return t;
}

}  // namespace pinless::vmm
