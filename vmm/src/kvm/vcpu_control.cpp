#include "pinless/vmm/kvm/vcpu_control.h"

namespace pinless::vmm {

void PauseGate::pause() {
  std::lock_guard lock(mu_);
  paused_ = true;
  // Before the caller kicks the vCPUs: a kicked vCPU sees it after KVM_RUN returns.
  raised_.store(true, std::memory_order_release);
}

void PauseGate::resume() {
  {
    std::lock_guard lock(mu_);
    paused_ = false;
    raised_.store(false, std::memory_order_release);
  }
  cv_.notify_all();
}

bool PauseGate::paused() const {
  std::lock_guard lock(mu_);
  return paused_;
}

bool PauseGate::wait_while_paused(const VmState& state) {
  if (!raised_.load(std::memory_order_acquire)) return false;  // the common case: no lock
  std::unique_lock lock(mu_);
  if (!paused_ || state.stopping()) return false;
  ++parked_;
  parked_cv_.notify_all();
  cv_.wait(lock, [&] { return !paused_ || state.stopping(); });
  --parked_;
  return true;
}

void PauseGate::wake_all() {
  // Taking the lock orders this after a waiter's predicate check: it cannot miss the wake-up.
  { std::lock_guard lock(mu_); }
  cv_.notify_all();
}

bool PauseGate::wait_parked(unsigned count, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return parked_cv_.wait_for(lock, timeout, [&] { return parked_ >= count; });
}

unsigned PauseGate::parked() const {
  std::lock_guard lock(mu_);
  return parked_;
}

}  // namespace pinless::vmm
