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
#include "pinless/vmm/kvm/vm_state.h"

namespace pinless::vmm {

constexpr int kVcpuKickSignal = SIGUSR1;

// Installs the no-op SIGUSR1 handler (process-wide; call once before starting vCPU threads).
void install_vcpu_kick_handler();

// Runs `vcpu` on the calling thread until `state` stops. `before_first_run` (may be empty) is
// called just before the first KVM_RUN (the timeline's first_kvm_run).
void run_vcpu(Vcpu& vcpu, IoBus& bus, VmState& state, const std::function<void()>& before_first_run);

// One std::thread per vCPU. Owns the threads (not the vCPUs). Main thread only.
class VcpuThreads {
 public:
  VcpuThreads() = default;
  VcpuThreads(const VcpuThreads&) = delete;
  ~VcpuThreads() { stop_all(); }

  void start(Vcpu& vcpu, IoBus& bus, VmState& state, std::function<void()> before_first_run);
  // Stops the VM (VmState::fail if nothing ended it yet: the first outcome wins), kicks
  // every vCPU out of KVM_RUN and joins the threads.
  void stop_all();

 private:
  struct Entry {
    Vcpu* vcpu;
    VmState* state;
    std::thread thread;
  };
  std::vector<Entry> threads_;
};

}  // namespace pinless::vmm
