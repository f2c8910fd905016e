#include "pinless/vfio/vfio_device.h"

#include <fcntl.h>
#include <sys/mman.h>

#include <cstring>
#include <fmt/format.h>

#include "pinless/base/linux_kvm.h"
#include "pinless/base/log.h"
#include "pinless/iommu/uapi/iommufd.h"
#include "pinless/vfio/device_busy.h"
#include "pinless/vfio/sysfs.h"

namespace pinless::vfio {
namespace {

Error open_error(int err, const std::string& what, const std::string& name) {
  if (err == EBUSY) return explain_busy(Error("open", err, what), name);
  if (err == ENOENT) {
    return Error("open", err, name + ": " + what, "is vfio-pci loaded and the device bound to it?");
  }
  if (err == EACCES || err == EPERM) {
    return Error("open", err, name + ": " + what, "run as root or give this user access to " + what);
  }
  return Error("open", err, name + ": " + what);
}

// The errnos with which the kernel refuses a device another process holds or whose group is
// not viable (see device_busy.h).
bool maybe_busy(int err) { return err == EBUSY || err == EINVAL || err == EPERM; }

}  // namespace

Result<std::unique_ptr<VfioDevice>> VfioDevice::open_cdev(Sys& sys, const std::string& cdev_path,
                                                          iommu::IommufdBackend& ioas, const std::string& name) {
  int fd = sys.open(cdev_path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return std::unexpected(open_error(-fd, cdev_path, name));
  std::unique_ptr<VfioDevice> dev(new VfioDevice(sys, UniqueFd(sys, fd), name, -1));

  vfio_device_bind_iommufd bind{};
  bind.argsz = sizeof(bind);
  bind.iommufd = ioas.ctx().fd();
  if (int r = sys.ioctl(fd, VFIO_DEVICE_BIND_IOMMUFD, &bind); r < 0) {
    Error e("VFIO_DEVICE_BIND_IOMMUFD", -r, name);
    return std::unexpected(maybe_busy(-r) ? explain_busy(std::move(e), name) : std::move(e));
  }
  dev->devid_ = bind.out_devid;
  vfio_device_attach_iommufd_pt attach{};
  attach.argsz = sizeof(attach);
  attach.pt_id = ioas.ioas_id();
  if (int r = sys.ioctl(fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach); r < 0) {
    return fail("VFIO_DEVICE_ATTACH_IOMMUFD_PT", -r, fmt::format("{} to IOAS {}", name, ioas.ioas_id()));
  }
  PINLESS_TRY_VOID(dev->query());
  return dev;
}

Status VfioDevice::attach_pt(uint32_t pt_id) {
  vfio_device_attach_iommufd_pt attach{};
  attach.argsz = sizeof(attach);
  attach.pt_id = pt_id;
  if (int r = sys_.ioctl(fd_.get(), VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach); r < 0) {
    return fail("VFIO_DEVICE_ATTACH_IOMMUFD_PT", -r, fmt::format("{} to object {}", name_, pt_id));
  }
  return {};
}

Result<std::unique_ptr<VfioDevice>> VfioDevice::open_group(Sys& sys, iommu::Type1Backend& container, int group,
                                                           const std::string& bdf) {
  auto added = container.add_group(group);
  if (!added) {
    int err = added.error().err();  // EBUSY: held elsewhere; EPERM: e.g. not viable
    bool busy = err == EBUSY || err == EPERM;
    return std::unexpected(busy ? explain_busy(std::move(added.error()), bdf) : std::move(added.error()));
  }
  int group_fd = *added;
  std::string name = bdf;
  int fd = sys.ioctl(group_fd, VFIO_GROUP_GET_DEVICE_FD, const_cast<char*>(name.c_str()));
  if (fd < 0) {
    Error e("VFIO_GROUP_GET_DEVICE_FD", -fd, fmt::format("{} in group {}", bdf, group));
    return std::unexpected(-fd == EBUSY ? explain_busy(std::move(e), bdf) : std::move(e));
  }
  std::unique_ptr<VfioDevice> dev(new VfioDevice(sys, UniqueFd(sys, fd), bdf, group_fd));
  PINLESS_TRY_VOID(dev->query());
  return dev;
}

VfioDevice::~VfioDevice() {
  if (!fd_.valid()) return;
  // Leave the device quiet for whoever opens it next: no interrupts, reset if possible.
  for (const auto& irq : irqs_) {
    if (irq.index > kMsixIrq || irq.count == 0) continue;
    // The kernel answers EINVAL when this index is not the active interrupt type: nothing to do.
    if (auto s = disable_irqs(irq.index); !s && s.error().err() != EINVAL) {
      logger("vfio")->warn("{}: disabling interrupts at teardown failed: {}", name_, s.error().message());
    }
  }
  if (auto s = reset(); !s) logger("vfio")->warn("{}: reset at teardown failed: {}", name_, s.error().message());
}

bool VfioDevice::can_reset() const { return (flags_ & VFIO_DEVICE_FLAGS_RESET) != 0; }

Status VfioDevice::query() {
  vfio_device_info info{};
  info.argsz = sizeof(info);
  if (int r = sys_.ioctl(fd_.get(), VFIO_DEVICE_GET_INFO, &info); r < 0) {
    return fail("VFIO_DEVICE_GET_INFO", -r, name_);
  }
  if ((info.flags & VFIO_DEVICE_FLAGS_PCI) == 0) {
    return fail("VFIO_DEVICE_GET_INFO", ENODEV, name_ + " is not a PCI device");
  }
  if (info.num_regions <= kConfigRegion) {
    return fail("VFIO_DEVICE_GET_INFO", ENODEV, fmt::format("{}: only {} regions", name_, info.num_regions));
  }
  flags_ = info.flags;
  for (uint32_t i = 0; i < info.num_regions && i <= kConfigRegion; ++i) {
    regions_.push_back(PINLESS_TRY(query_region(i)));
  }
  for (uint32_t i = 0; i < info.num_irqs && i <= kMsixIrq; ++i) {
    vfio_irq_info irq{};
    irq.argsz = sizeof(irq);
    irq.index = i;
    if (int r = sys_.ioctl(fd_.get(), VFIO_DEVICE_GET_IRQ_INFO, &irq); r < 0) {
      return fail("VFIO_DEVICE_GET_IRQ_INFO", -r, fmt::format("{} index {}", name_, i));
    }
    irqs_.push_back({i, irq.flags, irq.count});
  }
  return reset();
}

Result<RegionInfo> VfioDevice::query_region(uint32_t index) {
  std::vector<uint8_t> buf(sizeof(vfio_region_info));
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto* ri = reinterpret_cast<vfio_region_info*>(buf.data());
    ri->argsz = uint32_t(buf.size());
    ri->index = index;
    if (int r = sys_.ioctl(fd_.get(), VFIO_DEVICE_GET_REGION_INFO, buf.data()); r < 0) {
      return fail("VFIO_DEVICE_GET_REGION_INFO", -r, fmt::format("{} region {}", name_, index));
    }
    // The kernel asks for a bigger buffer when the capabilities do not fit.
    if (ri->argsz > buf.size() && ri->argsz <= 64 * 1024) {
      buf.resize(ri->argsz);
      continue;
    }
    RegionInfo info;
    info.index = index;
    info.flags = ri->flags;
    info.size = ri->size;
    info.offset = ri->offset;
    if ((ri->flags & VFIO_REGION_INFO_FLAG_CAPS) && ri->cap_offset != 0) {
      if (!parse_region_caps(buf, ri->cap_offset, info)) {
        logger("vfio")->warn("{}: region {}: malformed capability chain ignored", name_, index);
      }
    }
    return info;
  }
  return fail("VFIO_DEVICE_GET_REGION_INFO", EMSGSIZE, fmt::format("{} region {}", name_, index));
}

const RegionInfo* VfioDevice::region(uint32_t index) const {
  return index < regions_.size() ? &regions_[index] : nullptr;
}
const IrqInfo* VfioDevice::irq(uint32_t index) const {
  return index < irqs_.size() ? &irqs_[index] : nullptr;
}

Status VfioDevice::reset() {
  if (!can_reset()) return {};
  if (int r = sys_.ioctl_int(fd_.get(), VFIO_DEVICE_RESET, 0); r < 0) return fail("VFIO_DEVICE_RESET", -r, name_);
  return {};
}

Status VfioDevice::region_read(uint32_t index, uint64_t offset, std::span<uint8_t> data) {
  const RegionInfo* r = region(index);
  if (r == nullptr || offset > r->size || data.size() > r->size - offset) {
    return fail("vfio region read", EINVAL, fmt::format("{} region {} offset {:#x}", name_, index, offset));
  }
  ssize_t n = sys_.pread(fd_.get(), data.data(), data.size(), off_t(r->offset + offset));
  if (n < 0) return fail("pread", int(-n), fmt::format("{} region {} offset {:#x}", name_, index, offset));
  if (size_t(n) != data.size()) return fail("pread", EIO, fmt::format("{} region {}: short read", name_, index));
  return {};
}

Status VfioDevice::region_write(uint32_t index, uint64_t offset, std::span<const uint8_t> data) {
  const RegionInfo* r = region(index);
  if (r == nullptr || offset > r->size || data.size() > r->size - offset) {
    return fail("vfio region write", EINVAL, fmt::format("{} region {} offset {:#x}", name_, index, offset));
  }
  ssize_t n = sys_.pwrite(fd_.get(), data.data(), data.size(), off_t(r->offset + offset));
  if (n < 0) return fail("pwrite", int(-n), fmt::format("{} region {} offset {:#x}", name_, index, offset));
  if (size_t(n) != data.size()) return fail("pwrite", EIO, fmt::format("{} region {}: short write", name_, index));
  return {};
}

Result<uint32_t> VfioDevice::config_read(uint16_t offset, uint8_t size) {
  if (size != 1 && size != 2 && size != 4) return fail("vfio config read", EINVAL, name_);
  uint8_t b[4] = {};
  PINLESS_TRY_VOID(region_read(kConfigRegion, offset, std::span(b, size)));
  uint32_t v = 0;
  std::memcpy(&v, b, size);
  return v;
}

Status VfioDevice::config_write(uint16_t offset, uint8_t size, uint32_t value) {
  if (size != 1 && size != 2 && size != 4) return fail("vfio config write", EINVAL, name_);
  uint8_t b[4];
  std::memcpy(b, &value, 4);
  return region_write(kConfigRegion, offset, std::span<const uint8_t>(b, size));
}

Status VfioDevice::config_read_all(std::span<uint8_t> out) {
  std::memset(out.data(), 0xff, out.size());
  const RegionInfo* r = region(kConfigRegion);
  uint64_t n = r ? std::min<uint64_t>(r->size, out.size()) : 0;
  if (n < 64) return fail("vfio config", EIO, fmt::format("{}: config region of {} bytes", name_, n));
  return region_read(kConfigRegion, 0, out.first(n));
}

Result<MappedMemory> VfioDevice::map_region(uint32_t index, uint64_t offset, uint64_t size) {
  const RegionInfo* r = region(index);
  if (r == nullptr || !r->mmappable() || offset > r->size || size > r->size - offset || size == 0) {
    return fail("mmap", EINVAL, fmt::format("{} region {} [{:#x}, +{:#x})", name_, index, offset, size));
  }
  int err = 0;
  void* p = sys_.mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), off_t(r->offset + offset), &err);
  if (p == MAP_FAILED) return fail("mmap", err, fmt::format("{} region {} offset {:#x}", name_, index, offset));
  return MappedMemory(sys_, p, size);
}

Status VfioDevice::set_irq_eventfds(uint32_t index, uint32_t start, std::span<const int> fds) {
  std::vector<uint8_t> buf(sizeof(vfio_irq_set) + fds.size() * sizeof(int32_t));
  auto* set = reinterpret_cast<vfio_irq_set*>(buf.data());
  set->argsz = uint32_t(buf.size());
  set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
  set->index = index;
  set->start = start;
  set->count = uint32_t(fds.size());
  for (size_t i = 0; i < fds.size(); ++i) {
    int32_t v = fds[i];
    std::memcpy(buf.data() + sizeof(vfio_irq_set) + i * 4, &v, 4);
  }
  if (int r = sys_.ioctl(fd_.get(), VFIO_DEVICE_SET_IRQS, buf.data()); r < 0) {
    return fail("VFIO_DEVICE_SET_IRQS", -r, fmt::format("{} index {} vectors {}..{}", name_, index, start,
                                                        start + fds.size()));
  }
  return {};
}

Status VfioDevice::disable_irqs(uint32_t index) {
  vfio_irq_set set{};
  set.argsz = sizeof(set);
  set.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
  set.index = index;
  set.start = 0;
  set.count = 0;
  if (int r = sys_.ioctl(fd_.get(), VFIO_DEVICE_SET_IRQS, &set); r < 0) {
    return fail("VFIO_DEVICE_SET_IRQS", -r, fmt::format("{} disable index {}", name_, index));
  }
  return {};
}

Result<KvmVfio> KvmVfio::create(Sys& sys, int vm_fd) {
  kvm_create_device cd{};
  cd.type = KVM_DEV_TYPE_VFIO;
  if (int r = sys.ioctl(vm_fd, KVM_CREATE_DEVICE, &cd); r < 0) {
    return fail("KVM_CREATE_DEVICE", -r, "KVM VFIO device");
  }
  return KvmVfio(sys, UniqueFd(sys, int(cd.fd)));
}

Status KvmVfio::add_file(int fd) {
  int32_t file = fd;
  kvm_device_attr attr{};
  attr.group = KVM_DEV_VFIO_GROUP;      // == KVM_DEV_VFIO_FILE on >= 6.6
  attr.attr = KVM_DEV_VFIO_GROUP_ADD;   // == KVM_DEV_VFIO_FILE_ADD
  attr.addr = reinterpret_cast<uint64_t>(&file);
  if (int r = sys_->ioctl(fd_.get(), KVM_SET_DEVICE_ATTR, &attr); r < 0) {
    Error e("KVM_SET_DEVICE_ATTR", -r, "KVM_DEV_VFIO_FILE_ADD");
    if (-r == EBADF || -r == EINVAL) {
      return std::unexpected(std::move(e).with_hint("the host kernel is older than 6.6 and accepts VFIO group fds only: "
                                                    "use --iommu-backend=type1"));
    }
    return std::unexpected(std::move(e));
  }
  return {};
}

Status KvmVfio::remove_file(int fd) {
  int32_t file = fd;
  kvm_device_attr attr{};
  attr.group = KVM_DEV_VFIO_GROUP;
  attr.attr = KVM_DEV_VFIO_GROUP_DEL;
  attr.addr = reinterpret_cast<uint64_t>(&file);
  if (int r = sys_->ioctl(fd_.get(), KVM_SET_DEVICE_ATTR, &attr); r < 0) {
    return fail("KVM_SET_DEVICE_ATTR", -r, "KVM_DEV_VFIO_FILE_DEL");
  }
  return {};
}

}  // namespace pinless::vfio
