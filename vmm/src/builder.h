// The builder: assembles a VM from a VmConfig in one linear function (Firecracker's
// builder.rs style) and runs it until the guest powers off, resets or crashes, or a signal
// stops it. Main thread only.
#pragma once

#include "pinless/base/result.h"
#include "pinless/base/sys.h"
#include "pinless/vmm/cli/config.h"
#include "pinless/vmm/timeline/timeline.h"

namespace pinless::vmm {

// Builds the VM, runs it to the end and returns pinless's exit status (docs/guest-abi.md).
// An error means pinless itself failed before or while starting the guest (exit status 1).
// `sys` is linux_sys() in production, a scripted fake in tests. Blocks SIGINT/SIGTERM while
// it runs (they stop the VM) and restores the caller's signal mask on return.
[[nodiscard]] Result<int> build_and_run(const VmConfig& config, Timeline& timeline,
                                        Sys& sys = linux_sys());

}  // namespace pinless::vmm
