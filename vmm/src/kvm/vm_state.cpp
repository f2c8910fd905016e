#include "pinless/vmm/kvm/vm_state.h"

#include <string.h>
#include <unistd.h>

#include "pinless/base/log.h"

namespace pinless::vmm {

void VmState::set_guest_status(uint8_t status) {
  std::lock_guard lock(mu_);
  guest_status_ = status;
}

void VmState::power_off(std::string cause) { finish(Outcome::kPowerOff, std::move(cause)); }
void VmState::reset(std::string cause) { finish(Outcome::kReset, std::move(cause)); }
void VmState::crash(std::string cause) { finish(Outcome::kCrash, std::move(cause)); }
void VmState::stopped(std::string cause) { finish(Outcome::kStopped, std::move(cause)); }
void VmState::fail(std::string message) { finish(Outcome::kFailed, std::move(message)); }
void VmState::interrupted(int signo) {
  const char* name = sigabbrev_np(signo);
  finish(Outcome::kSignal,
         "stopped by SIG" + (name != nullptr ? std::string(name) : std::to_string(signo)), signo);
}

void VmState::finish(Outcome outcome, std::string cause, int signo) {
  {
    std::lock_guard lock(mu_);
    if (outcome_ != Outcome::kRunning) return;  // the first outcome wins
    outcome_ = outcome;
    cause_ = std::move(cause);
    signo_ = signo;
  }
  stop_.store(true, std::memory_order_release);
  if (wake_fd_.valid()) {
    uint64_t one = 1;
    // Only fails if the counter would overflow, which means the main thread is awake anyway.
    [[maybe_unused]] ssize_t n = ::write(wake_fd_.get(), &one, sizeof(one));
  }
}

VmState::Outcome VmState::outcome() const {
  std::lock_guard lock(mu_);
  return outcome_;
}

std::string VmState::cause() const {
  std::lock_guard lock(mu_);
  return cause_;
}

std::optional<uint8_t> VmState::guest_status() const {
  std::lock_guard lock(mu_);
  return guest_status_;
}

int exit_status_for(ExitStatusMode mode, VmState::Outcome outcome, std::optional<uint8_t> guest_status, int signo) {
  switch (outcome) {
    case VmState::Outcome::kPowerOff: {
      int status = guest_status.value_or(0);
      return mode == ExitStatusMode::kVmm && status != 0 ? kExitGuestStatus : status;
    }
    case VmState::Outcome::kReset: return kExitReset;
    case VmState::Outcome::kCrash: return kExitCrash;
    case VmState::Outcome::kSignal: return kExitSignal + signo;
    case VmState::Outcome::kStopped: return 0;
    case VmState::Outcome::kFailed: return kExitFailed;
    case VmState::Outcome::kRunning: return kExitFailed;  // asked before the VM ended: a pinless bug
  }
  return kExitFailed;
}

int VmState::exit_status(ExitStatusMode mode) const {
  std::lock_guard lock(mu_);
  return exit_status_for(mode, outcome_, guest_status_, signo_);
}

}  // namespace pinless::vmm
