// Exit handling: what a vCPU thread does after KVM_RUN returns. A pure function over a
// kvm_run (hand-built in tests): PIO and MMIO are dispatched to the IoBus (reads are written
// back into kvm_run for KVM to complete the instruction); everything else becomes an action
// for the run loop. Thread-safe (touches only its arguments and the thread-safe bus).
#pragma once

#include "pinless/base/linux_kvm.h"

#include <cstddef>
#include <string>

#include "pinless/vmm/io_bus.h"

namespace pinless::vmm {

struct ExitAction {
  enum class Kind {
    kContinue,  // re-enter KVM_RUN
    kPowerOff,  // the guest asked to power off (KVM_SYSTEM_EVENT_SHUTDOWN)
    kReset,     // reboot or triple fault: pinless exit status 2
    kCrash,     // failed entry, internal error, unknown exit: exit status 3
  };
  Kind kind = Kind::kContinue;
  std::string reason;  // for everything but kContinue

  static ExitAction cont() { return {}; }
};

// `run_size` is the size of the kvm_run mapping; the PIO data area must lie inside it.
ExitAction handle_exit(kvm_run& run, size_t run_size, IoBus& bus);

// "KVM_EXIT_IO" etc., or "exit reason N".
std::string exit_reason_name(uint32_t reason);

}  // namespace pinless::vmm
