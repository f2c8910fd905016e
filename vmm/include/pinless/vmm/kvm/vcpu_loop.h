// The run loop of one vCPU thread: KVM_RUN, handle_exit(), repeat until VmState says stop.
// Stopping: VmState's flag is checked before every KVM_RUN; VcpuThreads::stop_all() sets
// kvm_run.immediate_exit and sends SIGUSR1 (a no-op handler installed without SA_RESTART)
// so a vCPU inside KVM_RUN returns -EINTR at once. Thread-safe as documented per function.
#pragma once

#include <csignal>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "pinless/vmm/io_bus.h"
#include "pinless/vmm/kvm/vcpu.h"
#include "pinless/vmm/kvm/vcpu_control.h"
#include "pinless/vmm/kvm/vm_state.h"

namespace pinless::vmm {

constexpr int kVcpuKickSignal = SIGUSR1;

// Installs the no-op SIGUSR1 handler (process-wide; call once before starting vCPU threads).
void install_vcpu_kick_handler();

// Runs `vcpu` on the calling thread until `state` stops. `before_first_run` (may be empty) is
// called just before the first KVM_RUN (the timeline's first_kvm_run). With a `gate`, the
// vCPU parks before KVM_RUN while the gate is paused; `exits` (may be null) counts its exits.
void run_vcpu(Vcpu& vcpu, IoBus& bus, VmState& state, const std::function<void()>& before_first_run,
              PauseGate* gate = nullptr, ExitCounters* exits = nullptr);

// One std::thread per vCPU. Owns the threads (not the vCPUs). Main thread only.
class VcpuThreads {
 public:
  VcpuThreads() = default;
  VcpuThreads(const VcpuThreads&) = delete;
  ~VcpuThreads() { stop_all(); }

  // `thread_setup` (may be empty) runs first on the new thread (its seccomp filter); if it
  // fails, the VM fails with its message and the vCPU never runs.
  void start(Vcpu& vcpu, IoBus& bus, VmState& state, std::function<Status()> thread_setup,
             std::function<void()> before_first_run);
  // Stops the VM (VmState::fail if nothing ended it yet: the first outcome wins), kicks
  // every vCPU out of KVM_RUN and joins the threads.
  void stop_all();

  // Parks every vCPU out of KVM_RUN; returns whether all were parked within `timeout` (they
  // stay paused either way until resume()). Idempotent.
  bool pause(std::chrono::milliseconds timeout);
  void resume();
  bool paused() const { return gate_.paused(); }
  // Exits of all vCPUs so far, summed: index = KVM exit reason.
  struct ExitTotals {
    std::array<uint64_t, ExitCounters::kReasons> by_reason{};
    uint64_t interrupted = 0;
    uint64_t other = 0;
  };
  ExitTotals exits() const;

 private:
  struct Entry {
    Vcpu* vcpu;
    VmState* state;
    std::thread thread;
  };
  void kick_all();

  PauseGate gate_;
  std::vector<std::unique_ptr<ExitCounters>> counters_;  // one per vCPU, never shrinks
  std::vector<Entry> threads_;
};

}  // namespace pinless::vmm
