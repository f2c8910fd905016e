// What each pinless thread may ask of the kernel once the guest runs: the per-thread seccomp
// allowlists (base/seccomp does the compiling and installing). Two kinds of thread:
//   vcpu:       KVM_RUN and the exits it serves: port/MMIO devices, VFIO config and BAR
//               access (pread/pwrite), MSI/MSI-X set-up (eventfds, KVM and VFIO ioctls), the
//               virtio-iommu's host mappings (iommufd ioctls), logging;
//   event loop: the main thread after start-up: the loop (epoll, timers, eventfds), the
//               control API's socket, the fault queue (read/write, iommufd ioctls), run-time
//               DMA policy changes (threads that pre-fault memory), pause/resume kicks, and
//               the teardown (closing devices, removing the socket, /proc/self/status).
// Threads inherit their creator's filter: the fault pre-population threads run under the
// event loop's. Start-up (opening /dev/kvm, devices, files) runs before any filter.
#pragma once

#include <vector>

#include "pinless/base/result.h"
#include "pinless/base/seccomp.h"

namespace pinless::vmm {

std::vector<seccomp::Rule> vcpu_seccomp_rules();
std::vector<seccomp::Rule> event_loop_seccomp_rules();

struct SeccompFilters {
  seccomp::Filter vcpu;
  seccomp::Filter event_loop;
};
// --seccomp-selftest: the calling thread (`who` in the log) makes a syscall no filter allows
// (socket), as a test that the filter is on: with Mode::kTrap pinless dies of SIGSYS here.
void call_forbidden_syscall(const char* who);

// Compiles both (empty filters for Mode::kOff) and, for kTrap, installs the SIGSYS reporter.
Result<SeccompFilters> make_seccomp_filters(seccomp::Mode mode);

}  // namespace pinless::vmm
