// Type1Backend: DmaBackend over a legacy VFIO container (/dev/vfio/vfio with the type1v2
// IOMMU). Owns the container fd and the fds of the groups added to it (the vfio layer gets
// device fds from group_fd()). Teardown order: groups close before the container.
// Heap-allocated (create() returns unique_ptr) so DmaMappings can point at it.
// Thread-compatible; must outlive every DmaMapping made on it.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pinless/base/fd.h"
#include "pinless/base/sys.h"
#include "pinless/iommu/dma_backend.h"
#include "pinless/iommu/type1_info.h"

namespace pinless::iommu {

// Lists the devices of IOMMU group N (names in /sys/kernel/iommu_groups/N/devices).
using GroupDevicesFn = std::function<std::vector<std::string>(int group)>;
std::vector<std::string> sysfs_group_devices(int group);

class Type1Backend final : public DmaBackend {
 public:
  // Opens /dev/vfio/vfio, checks VFIO_GET_API_VERSION and VFIO_CHECK_EXTENSION(TYPE1v2).
  static Result<std::unique_ptr<Type1Backend>> open(Sys& sys, GroupDevicesFn group_devices = sysfs_group_devices);

  // Opens /dev/vfio/<group>, checks that it is viable (every device of the group bound to
  // vfio-pci or no driver), adds it to the container; the first group also selects the
  // type1v2 IOMMU. Returns the group fd, owned by the backend. Adding a group twice returns
  // the same fd. On failure nothing of the group is kept.
  Result<int> add_group(int group);
  int group_fd(int group) const;
  int container_fd() const { return container_.get(); }

  // VFIO_IOMMU_GET_INFO, growing the buffer as long as the kernel asks for more.
  Result<Type1Info> info();

  Status map(Iova iova, Hva hva, uint64_t size, Perm perm) override;
  Status unmap(Iova iova, uint64_t size) override;
  Result<std::vector<Range<Iova>>> iova_ranges() override;
  uint64_t mapped_bytes() const override { return mapped_bytes_; }
  BackendKind kind() const override { return BackendKind::kType1; }

 private:
  Type1Backend(Sys& sys, UniqueFd container, GroupDevicesFn fn)
      : sys_(sys), container_(std::move(container)), group_devices_(std::move(fn)) {}

  Sys& sys_;
  UniqueFd container_;
  std::map<int, UniqueFd> groups_;  // destroyed before container_ (declared after it)
  GroupDevicesFn group_devices_;
  bool iommu_set_ = false;
  uint64_t mapped_bytes_ = 0;
};

}  // namespace pinless::iommu
