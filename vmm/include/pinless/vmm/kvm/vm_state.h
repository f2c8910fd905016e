// VmState: how the VM ends. Devices (ACPI PM, i8042, debug port), vCPU threads and the
// signal handling of the main thread report outcomes here; the first outcome wins, sets the
// VM-wide stop flag that vCPU loops check before each KVM_RUN, and wakes the main thread via
// an eventfd. exit_status() maps the outcome to docs/guest-abi.md. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "pinless/base/fd.h"

namespace pinless::vmm {

// What the exit status of `pinless run` carries (--exit-status, docs/guest-abi.md).
// kGuest: the status the guest wrote to 0xf5 before powering off; the guest may write any
// byte, so its 1, 2, 3 and 128+N look like pinless's own outcomes. kVmm: only pinless's
// verdict; a guest that powers off with a non-zero status gives kExitGuestStatus, whatever the
// value (which the builder prints on stderr), so no guest status can pass for an outcome.
enum class ExitStatusMode { kGuest, kVmm };
constexpr int kExitFailed = 1;       // pinless itself failed
constexpr int kExitReset = 2;        // reboot, triple fault, panic with panic=-1
constexpr int kExitCrash = 3;        // KVM reported a guest crash
constexpr int kExitGuestStatus = 4;  // kVmm: the guest powered off with a non-zero status
constexpr int kExitSignal = 128;     // + the signal number

class VmState {
 public:
  // kStopped: stopped on request through the control API (vm.stop, or vm.shutdown's timeout).
  enum class Outcome { kRunning, kPowerOff, kReset, kCrash, kSignal, kStopped, kFailed };

  // `wake_fd`: an eventfd the main thread polls (may be invalid in tests). Owned.
  explicit VmState(UniqueFd wake_fd = UniqueFd()) : wake_fd_(std::move(wake_fd)) {}

  // Guest wrote `status` to port 0xf5 (the last write before poweroff counts).
  void set_guest_status(uint8_t status);
  void power_off(std::string cause = "guest powered off");
  void reset(std::string cause);
  void crash(std::string cause);
  void interrupted(int signo);
  // The control API stopped the VM (`cause` says which request).
  void stopped(std::string cause);
  // pinless itself failed on a vCPU thread (e.g. KVM_RUN returned an unexpected errno).
  void fail(std::string message);

  bool stopping() const { return stop_.load(std::memory_order_acquire); }
  Outcome outcome() const;
  std::string cause() const;
  std::optional<uint8_t> guest_status() const;
  int wake_fd() const { return wake_fd_.get(); }
  // exit_status_for() of the outcome so far.
  int exit_status(ExitStatusMode mode = ExitStatusMode::kGuest) const;

 private:
  void finish(Outcome outcome, std::string cause, int signo = 0);

  mutable std::mutex mu_;
  std::atomic<bool> stop_{false};
  Outcome outcome_ = Outcome::kRunning;
  std::string cause_;
  std::optional<uint8_t> guest_status_;
  int signo_ = 0;
  UniqueFd wake_fd_;
};

// The exit status for an outcome: on poweroff the guest's status (kGuest) or 0 / kExitGuestStatus
// (kVmm); 0 when stopped through the API (what was asked was done); otherwise kExitReset,
// kExitCrash, kExitSignal + signo or kExitFailed in both modes.
int exit_status_for(ExitStatusMode mode, VmState::Outcome outcome, std::optional<uint8_t> guest_status, int signo);

}  // namespace pinless::vmm
