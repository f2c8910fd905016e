#include "pinless/iommu/backend_select.h"

#include <cerrno>
#include <filesystem>

namespace pinless::iommu {

const std::map<std::string, BackendChoice>& backend_choice_names() {
  static const std::map<std::string, BackendChoice> names{
      {"auto", BackendChoice::kAuto}, {"iommufd", BackendChoice::kIommufd}, {"type1", BackendChoice::kType1}};
  return names;
}

Result<BackendChoice> parse_backend_choice(const std::string& text) {
  if (auto it = backend_choice_names().find(text); it != backend_choice_names().end()) return it->second;
  return fail("--iommu-backend", EINVAL, text, "expected auto, iommufd or type1");
}

Result<BackendKind> select_backend(BackendChoice choice, const BackendProbe& p) {
  bool have_iommufd = p.dev_iommu || p.iommufd_fd_given;
  if (p.iommufd_fd_given && choice == BackendChoice::kType1) {
    return fail("--iommu-backend", EINVAL, p.device, "--iommufd-fd passes an iommufd; it cannot be used with type1");
  }
  if (choice == BackendChoice::kIommufd || p.iommufd_fd_given) {
    if (!have_iommufd) {
      return fail("--iommu-backend=iommufd", ENOENT, p.device,
                  "no /dev/iommu: the kernel lacks CONFIG_IOMMUFD; use --iommu-backend=type1");
    }
    if (!p.device_cdev) {
      return fail("--iommu-backend=iommufd", ENOENT, p.device,
                  "the device has no VFIO cdev (/dev/vfio/devices/vfioN): the kernel lacks "
                  "CONFIG_VFIO_DEVICE_CDEV or the device is not bound to vfio-pci");
    }
    return BackendKind::kIommufd;
  }
  if (choice == BackendChoice::kType1) {
    if (!p.vfio_container) {
      return fail("--iommu-backend=type1", ENOENT, p.device, "no /dev/vfio/vfio: `modprobe vfio-pci`");
    }
    return BackendKind::kType1;
  }
  if (have_iommufd && p.device_cdev) return BackendKind::kIommufd;
  if (p.vfio_container) return BackendKind::kType1;
  return fail("select IOMMU backend", ENOENT, p.device,
              "neither iommufd (/dev/iommu + device cdev) nor VFIO type1 (/dev/vfio/vfio) is available: "
              "`modprobe vfio-pci` and bind the device to vfio-pci");
}

BackendProbe probe_backends(const std::string& device, const std::string& cdev_path, bool iommufd_fd_given) {
  std::error_code ec;
  BackendProbe p;
  p.device = device;
  p.iommufd_fd_given = iommufd_fd_given;
  p.dev_iommu = std::filesystem::exists("/dev/iommu", ec);
  p.vfio_container = std::filesystem::exists("/dev/vfio/vfio", ec);
  p.device_cdev = !cdev_path.empty() && std::filesystem::exists(cdev_path, ec);
  return p;
}

}  // namespace pinless::iommu
