// VfioDevice: one PCI device opened through VFIO, either as a cdev bound to the VM's iommufd
// and attached to its IOAS (iommufd path), or through its group in the VM's type1 container
// (legacy path). Reads the device, region and IRQ descriptions once at open, resets the
// device (when VFIO says it can) right after opening and again before closing, and offers
// config-space access, BAR mmaps and IRQ eventfd binding (VFIO_DEVICE_SET_IRQS).
// Owns the device fd (closed through Sys; closing a cdev fd also unbinds it from iommufd).
// The DMA backend (IOAS / container) must outlive it. Heap-allocated. Thread-compatible.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "pinless/base/fd.h"
#include "pinless/base/result.h"
#include "pinless/base/sys.h"
#include "pinless/iommu/iommufd_backend.h"
#include "pinless/iommu/type1_backend.h"
#include "pinless/vfio/region.h"

namespace pinless::vfio {

// VFIO PCI region and IRQ indexes (from <linux/vfio.h>, repeated so users need not include it).
constexpr uint32_t kBar0Region = 0, kConfigRegion = 7;
constexpr uint32_t kIntxIrq = 0, kMsiIrq = 1, kMsixIrq = 2;

class VfioDevice {
 public:
  // iommufd path: opens `cdev_path`, VFIO_DEVICE_BIND_IOMMUFD to the backend's iommufd,
  // VFIO_DEVICE_ATTACH_IOMMUFD_PT to its IOAS. `name` (the BDF) is used in messages.
  static Result<std::unique_ptr<VfioDevice>> open_cdev(Sys& sys, const std::string& cdev_path,
                                                       iommu::IommufdBackend& ioas, const std::string& name);
  // type1 path: adds the group to the container, VFIO_GROUP_GET_DEVICE_FD(bdf).
  static Result<std::unique_ptr<VfioDevice>> open_group(Sys& sys, iommu::Type1Backend& container, int group,
                                                        const std::string& bdf);
  ~VfioDevice();
  VfioDevice(const VfioDevice&) = delete;
  VfioDevice& operator=(const VfioDevice&) = delete;

  const std::string& name() const { return name_; }
  int fd() const { return fd_.get(); }
  // The fd to hand to the KVM VFIO pseudo-device: the group fd (type1) or the device fd.
  int kvm_file_fd() const { return group_fd_ >= 0 ? group_fd_ : fd_.get(); }
  uint32_t flags() const { return flags_; }
  bool can_reset() const;
  const std::vector<RegionInfo>& regions() const { return regions_; }
  const std::vector<IrqInfo>& irqs() const { return irqs_; }
  const RegionInfo* region(uint32_t index) const;
  const IrqInfo* irq(uint32_t index) const;
  uint32_t devid() const { return devid_; }  // iommufd device id (cdev path)
  // iommufd path: VFIO_DEVICE_ATTACH_IOMMUFD_PT onto another IOAS or HWPT (a replace: the
  // device stays where it was if the kernel refuses).
  Status attach_pt(uint32_t pt_id);

  // VFIO_DEVICE_RESET (no-op when the device cannot be reset).
  Status reset();

  // Config space of the real device (pread/pwrite of the config region).
  Result<uint32_t> config_read(uint16_t offset, uint8_t size);
  Status config_write(uint16_t offset, uint8_t size, uint32_t value);
  // Reads `out.size()` bytes of config space from offset 0 (short devices read as 0xff).
  Status config_read_all(std::span<uint8_t> out);
  // Region access (trapped BAR parts such as the MSI-X table page's other registers).
  Status region_read(uint32_t index, uint64_t offset, std::span<uint8_t> data);
  Status region_write(uint32_t index, uint64_t offset, std::span<const uint8_t> data);

  // mmap()s [offset, offset + size) of region `index` shared, read/write.
  Result<MappedMemory> map_region(uint32_t index, uint64_t offset, uint64_t size);

  // VFIO_DEVICE_SET_IRQS(ACTION_TRIGGER | DATA_EVENTFD) for vectors [start, start + fds.size());
  // an fd of -1 unbinds that vector.
  Status set_irq_eventfds(uint32_t index, uint32_t start, std::span<const int> fds);
  // VFIO_DEVICE_SET_IRQS(ACTION_TRIGGER | DATA_NONE, count 0): disables the index.
  Status disable_irqs(uint32_t index);

 private:
  VfioDevice(Sys& sys, UniqueFd fd, std::string name, int group_fd)
      : sys_(sys), fd_(std::move(fd)), name_(std::move(name)), group_fd_(group_fd) {}
  Status query();
  Result<RegionInfo> query_region(uint32_t index);

  Sys& sys_;
  UniqueFd fd_;
  std::string name_;
  int group_fd_ = -1;  // not owned (the container owns group fds)
  uint32_t devid_ = 0;
  uint32_t flags_ = 0;
  std::vector<RegionInfo> regions_;
  std::vector<IrqInfo> irqs_;
};

// The KVM VFIO pseudo-device (KVM_DEV_TYPE_VFIO): tells KVM which VFIO files the VM uses
// (needed for coherent DMA / no-snoop handling and for some IOMMUs). Owns the device fd.
// Thread-compatible.
class KvmVfio {
 public:
  // KVM_CREATE_DEVICE(KVM_DEV_TYPE_VFIO) on `vm_fd`.
  static Result<KvmVfio> create(Sys& sys, int vm_fd);
  // KVM_DEV_VFIO_FILE_ADD (numerically the same attribute as the older
  // KVM_DEV_VFIO_GROUP_ADD, which kernels < 6.6 accept for group fds only).
  Status add_file(int fd);
  Status remove_file(int fd);
  int fd() const { return fd_.get(); }

 private:
  KvmVfio(Sys& sys, UniqueFd fd) : sys_(&sys), fd_(std::move(fd)) {}
  Sys* sys_;
  UniqueFd fd_;
};

}  // namespace pinless::vfio
