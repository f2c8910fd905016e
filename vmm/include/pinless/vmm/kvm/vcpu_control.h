// What the main thread needs from running vCPUs besides stopping them: parking them out of
// KVM_RUN (PauseGate, the control API's vm.pause/vm.resume) and counting their exits
// (ExitCounters, the API's vm.counters).
//
// Pausing: pause() raises the gate, the caller kicks every vCPU (request_exit + signal, as a
// stop does), and each vCPU thread, before its next KVM_RUN, parks in wait_while_paused()
// until resume() or the VM stops. wait_parked() tells the caller when all of them are out.
// Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "pinless/vmm/kvm/vm_state.h"

namespace pinless::vmm {

class PauseGate {
 public:
  void pause();
  void resume();
  bool paused() const;
  // vCPU thread, before KVM_RUN: returns at once unless paused; else parks until resume()
  // or wake_all() with the VM stopping. Returns whether it parked.
  bool wait_while_paused(const VmState& state);
  // Wakes parked vCPUs so they see the VM stopping (VcpuThreads::stop_all).
  void wake_all();
  // Waits until `count` vCPUs are parked, at most `timeout`; returns whether they are.
  bool wait_parked(unsigned count, std::chrono::milliseconds timeout);
  unsigned parked() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;         // vCPUs wait here for resume
  std::condition_variable parked_cv_;  // the pauser waits here for the vCPUs
  bool paused_ = false;
  // paused_, readable without the mutex: vCPU threads check it before every KVM_RUN, and
  // taking one mutex shared by all vCPUs on every exit would be a needless hot-path cost.
  std::atomic<bool> raised_{false};
  unsigned parked_ = 0;
};

// VM exits by KVM exit reason, plus the KVM_RUN calls that a signal interrupted (kicks). One
// instance per vCPU thread (each writes only its own, relaxed), summed by the reader.
struct ExitCounters {
  static constexpr size_t kReasons = 64;  // KVM_EXIT_* values are below this
  std::array<std::atomic<uint64_t>, kReasons> by_reason{};
  std::atomic<uint64_t> interrupted{0};
  std::atomic<uint64_t> other{0};  // a reason >= kReasons

  void count(uint32_t reason) {
    auto& c = reason < kReasons ? by_reason[reason] : other;
    c.fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace pinless::vmm
