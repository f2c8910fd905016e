// Finding a PCI device's VFIO handles from its address: the BDF (DDDD:BB:DD.F) names
// /sys/bus/pci/devices/BDF; its `driver` link says whether vfio-pci owns it, its
// `iommu_group` link gives the group (/dev/vfio/N, legacy type1 path) and
// `vfio-dev/vfioN` the cdev (/dev/vfio/devices/vfioN, iommufd path). Every failure says what
// to do (bind commands, enable the IOMMU). Reads the filesystem under `sysfs_root` (tests
// pass a temporary tree). Thread-safe (stateless).
#pragma once

#include <optional>
#include <string>

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

// Locates the device and checks it is usable for passthrough: exists (ENOENT), is bound to
// vfio-pci (EBUSY-free check; ENODEV with the bind commands otherwise), has an IOMMU group
// (ENXIO: no IOMMU). `dev_root` is where the cdev path is built ("/dev").
Result<DeviceLocation> locate_device(const std::string& bdf, const std::string& sysfs_root = "/sys",
                                     const std::string& dev_root = "/dev");

// "/dev/vfio/devices/vfio3" -> the BDF from <root>/class/vfio-dev/vfio3/device (ENOENT if unknown).
Result<std::string> bdf_of_cdev(const std::string& cdev_path, const std::string& sysfs_root = "/sys");

}  // namespace pinless::vfio
