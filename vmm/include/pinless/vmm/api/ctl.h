// `pinless ctl`: one control-API request, its answer printed for people (or as JSON with
// --json). Returns the process exit status (0 done, 1 refused or unreachable).
#pragma once

#include <string>

#include "pinless/vmm/api/vm_control.h"
#include "pinless/vmm/cli/config.h"

namespace pinless::vmm::api {

int run_ctl(const CtlConfig& config);

// The human-readable forms (tested on their own).
std::string format_info(const Json& info);
std::string format_counters(const Json& counters);
std::string format_timeline(const Json& timeline);

}  // namespace pinless::vmm::api
