#include "run.h"

#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>

#include <fmt/format.h>

#include "pinless/base/fd.h"
#include "pinless/base/log.h"
#include "pinless/vmm/api/server.h"
#include "pinless/vmm/event_loop.h"
#include "pinless/vmm/seccomp_policy.h"
#include "builder.h"
#include "microvm_control.h"

namespace pinless::vmm {
namespace {

// SIGINT/SIGTERM are blocked in every thread (vCPU threads inherit the mask) and read from a
// signalfd on the event loop, so a Ctrl-C becomes an orderly stop instead of an abrupt exit.
// Restores the previous mask when destroyed.
class StopSignals {
 public:
  StopSignals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    error_ = pthread_sigmask(SIG_BLOCK, &set, &old_);
    if (error_ == 0) {
      fd_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
      if (!fd_.valid()) error_ = errno;
    }
  }
  StopSignals(const StopSignals&) = delete;
  ~StopSignals() {
    if (error_ == 0 || fd_.valid()) pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  Status status() const { return error_ == 0 ? Status{} : fail("signalfd", error_, "SIGINT/SIGTERM"); }
  int fd() const { return fd_.get(); }

 private:
  sigset_t old_{};
  int error_ = 0;
  UniqueFd fd_;
};

}  // namespace

Result<RunResult> run_microvm(const VmConfig& config, Timeline& timeline, Sys& sys) {
  // Before any thread exists, so that every vCPU thread inherits the blocked stop signals;
  // the kick handler must be in place before a vCPU can be kicked.
  StopSignals stop_signals;
  PINLESS_TRY_VOID(stop_signals.status());
  install_vcpu_kick_handler();
  // A console piped into a process that exits must not kill the VMM with SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);

  // Compiled before anything runs (a bad rule fails here, not on a vCPU), installed by each
  // thread on itself once the VM is built: start-up opens devices and files freely.
  SeccompFilters filters;
  {
    auto phase = timeline.phase("seccomp", {{"mode", seccomp::to_string(config.seccomp)}});
    filters = PINLESS_TRY(make_seccomp_filters(config.seccomp));
  }
  std::unique_ptr<MicroVm> vm = PINLESS_TRY(build_microvm(config, timeline, sys));
  // Declared after the VM, so destroyed before it: no handler outlives what it uses. The
  // vCPUs are joined (stop() below, or the VM's destructor) before anything goes.
  EventLoop loop;
  VmState& state = vm->state();
  PINLESS_TRY_VOID(loop.add_fd(stop_signals.fd(), "stop signals", [&] {
    signalfd_siginfo si{};
    while (::read(stop_signals.fd(), &si, sizeof(si)) == sizeof(si)) state.interrupted(int(si.ssi_signo));
    return EventLoop::Next::kWait;
  }));
  // The control API: bound before the vCPU threads exist (its socket is made 0600 with a
  // umask around bind), and destroyed (socket removed) before the loop and the VM.
  MicroVmControl control(*vm, loop);
  std::unique_ptr<api::ApiServer> api;
  if (!config.api_socket.empty()) {
    api = PINLESS_TRY(api::ApiServer::create(loop, config.api_socket, control));
    control.set_server(api.get());
  }
  PINLESS_TRY_VOID(vm->start(loop, filters.vcpu));
  // The vCPU threads exist: from here on, this thread and any it creates are the event loop.
  PINLESS_TRY_VOID(seccomp::install(filters.event_loop, "event-loop"));
  if (config.seccomp_selftest == "loop") call_forbidden_syscall("the event loop");
  loop.run();
  vm->stop();
  vm->finish();

  RunResult r;
  r.outcome = state.outcome();
  r.cause = state.cause();
  r.guest_status = state.guest_status();
  r.exit_status = state.exit_status(config.exit_status);
  if (r.outcome == VmState::Outcome::kPowerOff) {
    logger("vmm")->info("guest powered off (status {})", r.guest_status.value_or(0));
  }
  return r;
}

std::string describe(const RunResult& r, ExitStatusMode mode) {
  switch (r.outcome) {
    case VmState::Outcome::kPowerOff:
      // --exit-status vmm: the guest's own value, in the one line docs/guest-abi.md promises.
      if (r.exit_status == kExitGuestStatus && mode == ExitStatusMode::kVmm) {
        return fmt::format("guest exit status {}", int(*r.guest_status));
      }
      return {};
    case VmState::Outcome::kReset:
      return fmt::format("guest reset ({}); exit status {}", r.cause, r.exit_status);
    case VmState::Outcome::kCrash:
      return fmt::format("guest crashed ({}); exit status {}", r.cause, r.exit_status);
    case VmState::Outcome::kSignal:
      return fmt::format("{}; VM stopped", r.cause);
    case VmState::Outcome::kStopped:
      return r.cause;
    case VmState::Outcome::kFailed:
      return r.cause;
    case VmState::Outcome::kRunning:
      return {};
  }
  return {};
}

}  // namespace pinless::vmm
