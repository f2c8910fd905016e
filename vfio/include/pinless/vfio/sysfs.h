// Finding a PCI device's VFIO handles from its address: the BDF (DDDD:BB:DD.F) names
// /sys/bus/pci/devices/BDF; its `driver` link says whether vfio-pci owns it, its
// `iommu_group` link gives the group (/dev/vfio/N, legacy type1 path) and
// `vfio-dev/vfioN` the cdev (/dev/vfio/devices/vfioN, iommufd path). Every failure says what
// to do (bind commands, enable the IOMMU). Reads the filesystem under `sysfs_root` (tests
// pass a temporary tree). Thread-safe (stateless).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "pinless/base/result.h"

namespace pinless::vfio {

struct DeviceLocation {
  std::string bdf;                 // canonical DDDD:BB:DD.F
  std::string sysfs_path;          // <root>/bus/pci/devices/BDF
  std::string driver;              // bound driver's name ("" if none)
  std::optional<int> group;        // IOMMU group number
  std::string cdev;                // /dev/vfio/devices/vfioN, "" if the kernel has no cdev
};

// "0000:00:03.0" or "00:03.0" (segment 0 implied) -> "0000:00:03.0"; EINVAL otherwise.
Result<std::string> normalize_bdf(const std::string& text);

// The shell commands that bind `bdf` to vfio-pci (for error hints and docs).
std::string bind_commands(const std::string& bdf);

// Locates the device and checks it is usable for passthrough: exists (ENOENT), has an IOMMU
// group (ENXIO: no IOMMU; checked before the driver, since vfio-pci cannot bind without one),
// is bound to vfio-pci (ENODEV with the bind commands otherwise). `dev_root` is where the
// cdev path is built ("/dev").
Result<DeviceLocation> locate_device(const std::string& bdf, const std::string& sysfs_root = "/sys",
                                     const std::string& dev_root = "/dev");

// A device in an IOMMU group and the driver bound to it ("" if none).
struct GroupMember {
  std::string name;  // BDF for PCI devices
  std::string driver;
};
// Every device of IOMMU group `group` (<root>/kernel/iommu_groups/N/devices), sorted.
std::vector<GroupMember> group_members(int group, const std::string& sysfs_root = "/sys");
// Whether a device bound to `driver` leaves its group usable for VFIO: no driver, a VFIO
// driver (vfio-pci and its variants), pci-stub or pcieport (the kernel's driver_managed_dma).
bool driver_keeps_group_viable(const std::string& driver);
// The members of `group` other than `bdf` that make it unusable (bound to host drivers).
std::vector<GroupMember> group_blockers(const std::string& bdf, int group, const std::string& sysfs_root = "/sys");

// "/dev/vfio/devices/vfio3" -> the BDF from <root>/class/vfio-dev/vfio3/device (ENOENT if unknown).
Result<std::string> bdf_of_cdev(const std::string& cdev_path, const std::string& sysfs_root = "/sys");

}  // namespace pinless::vfio
