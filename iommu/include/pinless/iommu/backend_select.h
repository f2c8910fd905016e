// Choosing the host DMA backend: iommufd when /dev/iommu exists and the device has a VFIO
// cdev (/dev/vfio/devices/vfioN), else the legacy VFIO type1 container. A forced choice
// (--iommu-backend=iommufd|type1, or --iommufd-fd N which implies iommufd) that is not
// available is an error saying why. select_backend() is pure; probe_backends() looks at
// the filesystem. Thread-safe.
#pragma once

#include <map>
#include <string>

#include "pinless/base/result.h"
#include "pinless/iommu/dma_backend.h"

namespace pinless::iommu {

enum class BackendChoice : uint8_t { kAuto, kIommufd, kType1 };
// The names of the choices ("auto", "iommufd", "type1"): the one table behind both
// parse_backend_choice() and the command line's --iommu-backend.
const std::map<std::string, BackendChoice>& backend_choice_names();
Result<BackendChoice> parse_backend_choice(const std::string& text);

struct BackendProbe {
  bool dev_iommu = false;         // /dev/iommu exists
  bool device_cdev = false;       // /dev/vfio/devices/vfioN exists for the device
  bool vfio_container = false;    // /dev/vfio/vfio exists
  bool iommufd_fd_given = false;  // --iommufd-fd N: an iommufd was passed in (no /dev/iommu needed)
  std::string device;             // BDF or name, for messages
};

Result<BackendKind> select_backend(BackendChoice choice, const BackendProbe& probe);

// Fills a probe from the filesystem. `cdev_path` may be empty (device has no cdev known).
BackendProbe probe_backends(const std::string& device, const std::string& cdev_path, bool iommufd_fd_given);

}  // namespace pinless::iommu
