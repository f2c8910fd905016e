// probe_host(): gathers HostFacts from the running system: sysfs, procfs and /dev under a
// root prefix (unit tests point it at a made-up tree) and, unless disabled, the timed KVM
// probe (kvm_speed.h). Reads only; never changes host state. Thread-compatible.
#pragma once

#include <string>

#include "pinless/base/sys.h"
#include "pinless/vmm/check/host_facts.h"

namespace pinless::vmm::check {

struct ProbeOptions {
  std::string root = "/";            // prefix for /sys, /proc and /dev paths
  std::string kvm_device = "/dev/kvm";
  bool run_kvm = true;               // open KVM and time guest code
  double budget_ms = 30;             // length of the measured guest and host runs
};

HostFacts probe_host(Sys& sys, const ProbeOptions& options);

// The selected word of a sysfs multiple-choice file: "always [advise] never" -> "advise".
std::string selected_word(const std::string& text);

}  // namespace pinless::vmm::check
