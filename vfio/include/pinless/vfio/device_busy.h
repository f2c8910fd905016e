// Why the kernel refused to hand a device over, for the error paths of VfioDevice::open_*.
// The errno alone is ambiguous: a cdev already bound by another process gives EINVAL on
// VFIO_DEVICE_BIND_IOMMUFD, a group held elsewhere EBUSY on open, a group whose other devices
// are bound to host drivers EPERM (iommufd) or "not viable" (type1). So on failure we look:
// processes holding the device's group node or cdev (/proc/PID/fd), and members of its IOMMU
// group bound to a host driver (sysfs). Reads the filesystem under the given roots (tests pass
// temporary trees). Thread-safe (stateless).
#pragma once

#include <string>
#include <vector>

#include "pinless/base/result.h"

namespace pinless::vfio {

struct HostRoots {
  std::string sysfs = "/sys";
  std::string proc = "/proc";
  std::string dev = "/dev";
  int self_pid = 0;  // 0: this process
};

struct Holder {
  int pid = 0;
  std::string comm;  // /proc/PID/comm, "" if unreadable
  std::string node;  // the device node it holds open
};

// Processes other than `self_pid` that have one of `nodes` open.
std::vector<Holder> find_holders(const std::vector<std::string>& nodes, const std::string& proc_root, int self_pid);

// The VFIO nodes through which `bdf` can be held: /dev/vfio/GROUP and its cdev, if any.
std::vector<std::string> device_nodes(const std::string& bdf, const HostRoots& roots);

// Rewrites a failed open/bind/group-add of `bdf`: "IOMMU group N is not viable: X is bound to
// host driver D" (with the unbind commands), or "in use by another process/VM: pid P (comm)
// holds NODE" (errno EBUSY), or, when neither is found, the original error with a hint.
Error explain_busy(Error e, const std::string& bdf, const HostRoots& roots = {});

}  // namespace pinless::vfio
