// seccomp: per-thread syscall allowlists, compiled once into a BPF program (libseccomp) and
// installed by each thread on itself, as Firecracker does. What a thread may call is a list
// of Rules; anything else either stops pinless with SIGSYS and one line naming the thread
// and the syscall (Mode::kTrap), or is allowed and logged by the kernel (Mode::kLog: dmesg,
// "type=1326 audit"), for finding what a list lacks. A thread's filter binds it and every
// thread it creates afterwards, for good. Thread-safe: compile() and install() touch only
// their arguments and the calling thread; install_sigsys_reporter() is process-wide.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pinless/base/result.h"

namespace pinless::seccomp {

enum class Mode { kOff, kLog, kTrap };
const char* to_string(Mode m);

// One allowed syscall, by name ("read", "ioctl"); for ioctl, optionally only the requests of
// one type (the _IOC type byte: 0xAE for KVM, ';' for VFIO and iommufd, 'T' for terminals
// and FIONBIO).
struct Rule {
  const char* syscall;
  std::optional<uint8_t> ioctl_type;
};

// A compiled filter: BPF instructions and the name its thread goes by in SIGSYS reports.
struct Filter {
  std::string name;  // "vcpu", "event loop"
  Mode mode = Mode::kOff;
  std::vector<sock_filter> program;  // empty when mode is kOff
};

// Compiles `rules` for this architecture; a syscall name libseccomp does not know is an
// error (a typo would otherwise drop a rule silently). Mode::kOff yields an empty filter.
Result<Filter> compile(std::string name, std::span<const Rule> rules, Mode mode);

// Installs `filter` on the calling thread (after PR_SET_NO_NEW_PRIVS); a no-op for kOff.
// The thread's SIGSYS report names it `thread_name` ("vcpu0").
Status install(const Filter& filter, std::string_view thread_name);

// The SIGSYS handler for Mode::kTrap: writes "pinless: seccomp: thread T called NAME
// (syscall N), which its filter does not allow ..." to stderr, then lets SIGSYS end the
// process. Call once, before any filter is installed.
Status install_sigsys_reporter();

}  // namespace pinless::seccomp
