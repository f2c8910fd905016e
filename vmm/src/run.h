// Running a VM to its end: blocks the stop signals, builds the MicroVm, runs the main event
// loop (VM end, stop signals, I/O page faults) until the VM ends, stops the vCPUs and returns
// how it ended; main reports it (docs/guest-abi.md). Main thread only.
#pragma once

#include <optional>
#include <string>

#include "pinless/base/result.h"
#include "pinless/base/sys.h"
#include "pinless/vmm/cli/config.h"
#include "pinless/vmm/kvm/vm_state.h"
#include "pinless/vmm/timeline/timeline.h"

namespace pinless::vmm {

struct RunResult {
  VmState::Outcome outcome = VmState::Outcome::kRunning;
  std::string cause;
  std::optional<uint8_t> guest_status;
  int exit_status = kExitFailed;  // per config.exit_status
};

// An error means pinless itself failed before the guest started (exit status 1).
// `sys` is linux_sys() in production, a scripted fake in tests. Blocks SIGINT/SIGTERM while
// it runs (they stop the VM) and restores the caller's signal mask on return.
[[nodiscard]] Result<RunResult> run_microvm(const VmConfig& config, Timeline& timeline, Sys& sys = linux_sys());

// The line main prints for `r` (empty: nothing to print), e.g. "guest reset (triple fault);
// exit status 2".
std::string describe(const RunResult& r, ExitStatusMode mode);

}  // namespace pinless::vmm
