#include "pinless/iommu/type1_backend.h"

#include <fcntl.h>
#include <linux/vfio.h>

#include <cerrno>
#include <filesystem>
#include <fmt/format.h>
#include <string>

#include "pinless/base/log.h"
#include "pinless/iommu/dma_errors.h"

namespace pinless::iommu {

std::vector<std::string> sysfs_group_devices(int group) {
  std::vector<std::string> out;
  std::error_code ec;
  auto dir = std::filesystem::path("/sys/kernel/iommu_groups") / std::to_string(group) / "devices";
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::unique_ptr<Type1Backend>> Type1Backend::open(Sys& sys, GroupDevicesFn group_devices) {
  int fd = sys.open("/dev/vfio/vfio", O_RDWR, 0);
  if (fd < 0) return std::unexpected(open_vfio_container_error(-fd));
  UniqueFd container(sys, fd);

  int version = sys.ioctl_int(fd, VFIO_GET_API_VERSION, 0);
  if (version < 0) return fail("VFIO_GET_API_VERSION", -version, "/dev/vfio/vfio");
  if (version != VFIO_API_VERSION) {
    return fail("VFIO_GET_API_VERSION", EPROTO, fmt::format("kernel VFIO API {} != {}", version, VFIO_API_VERSION));
  }
  int ext = sys.ioctl_int(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU);
  if (ext < 0) return fail("VFIO_CHECK_EXTENSION", -ext, "VFIO_TYPE1v2_IOMMU");
  if (ext == 0) {
    return fail("VFIO_CHECK_EXTENSION", EOPNOTSUPP, "VFIO_TYPE1v2_IOMMU",
                "the kernel has no VFIO type1v2 IOMMU: `modprobe vfio_iommu_type1`, or use --iommu-backend=iommufd");
  }
  return std::unique_ptr<Type1Backend>(new Type1Backend(sys, std::move(container), std::move(group_devices)));
}

int Type1Backend::group_fd(int group) const {
  auto it = groups_.find(group);
  return it == groups_.end() ? -1 : it->second.get();
}

Result<int> Type1Backend::add_group(int group) {
  if (int fd = group_fd(group); fd >= 0) return fd;
  std::string path = fmt::format("/dev/vfio/{}", group);
  int fd = sys_.open(path.c_str(), O_RDWR, 0);
  if (fd < 0) {
    Error e("open", -fd, path);
    if (-fd == ENOENT) return std::unexpected(std::move(e).with_hint("bind every device of the group to vfio-pci"));
    if (-fd == EBUSY) return std::unexpected(std::move(e).with_hint("the group is in use by another process"));
    return std::unexpected(std::move(e));
  }
  UniqueFd gfd(sys_, fd);

  vfio_group_status status{.argsz = sizeof(vfio_group_status), .flags = 0};
  if (int r = sys_.ioctl(fd, VFIO_GROUP_GET_STATUS, &status); r < 0) return fail("VFIO_GROUP_GET_STATUS", -r, path);
  if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
    std::string devs;
    for (const auto& d : group_devices_(group)) devs += (devs.empty() ? "" : ", ") + d;
    return fail("VFIO_GROUP_GET_STATUS", EPERM, fmt::format("IOMMU group {} is not viable", group),
                fmt::format("every device in the group must be bound to vfio-pci (or have no driver); "
                            "group {} holds: {}", group, devs.empty() ? "(unknown)" : devs));
  }
  int cfd = container_.get();
  if (int r = sys_.ioctl(fd, VFIO_GROUP_SET_CONTAINER, &cfd); r < 0) return fail("VFIO_GROUP_SET_CONTAINER", -r, path);
  if (!iommu_set_) {
    // The IOMMU model can only be chosen once a group is in the container.
    if (int r = sys_.ioctl_int(cfd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU); r < 0) {
      // gfd closes on return: the group leaves the container.
      if (-r == EPERM) {
        return fail("VFIO_SET_IOMMU", EPERM, path,
                    "no interrupt remapping: enable it in the IOMMU, or load vfio_iommu_type1 with "
                    "allow_unsafe_interrupts=1 (unsafe)");
      }
      return fail("VFIO_SET_IOMMU", -r, path);
    }
    iommu_set_ = true;
  }
  logger("iommu")->info("type1: IOMMU group {} added to container", group);
  auto [it, _] = groups_.emplace(group, std::move(gfd));
  return it->second.get();
}

Result<Type1Info> Type1Backend::info() {
  std::vector<uint8_t> buf(512);
  for (int attempt = 0; attempt < 4; ++attempt) {
    std::fill(buf.begin(), buf.end(), 0);
    auto* head = reinterpret_cast<vfio_iommu_type1_info*>(buf.data());
    head->argsz = static_cast<uint32_t>(buf.size());
    if (int r = sys_.ioctl(container_.get(), VFIO_IOMMU_GET_INFO, buf.data()); r < 0) {
      return fail("VFIO_IOMMU_GET_INFO", -r);
    }
    auto info = PINLESS_TRY(parse_type1_info(buf));
    if (info.needed_argsz <= buf.size()) return info;
    buf.resize(info.needed_argsz);
  }
  return fail("VFIO_IOMMU_GET_INFO", EOVERFLOW, "kernel kept asking for a larger buffer");
}

Status Type1Backend::map(Iova iova, Hva hva, uint64_t size, Perm perm) {
  vfio_iommu_type1_dma_map m{.argsz = sizeof(m), .flags = 0, .vaddr = hva.value(), .iova = iova.value(), .size = size};
  if (allows(perm, Perm::kRead)) m.flags |= VFIO_DMA_MAP_FLAG_READ;
  if (allows(perm, Perm::kWrite)) m.flags |= VFIO_DMA_MAP_FLAG_WRITE;
  if (int r = sys_.ioctl(container_.get(), VFIO_IOMMU_MAP_DMA, &m); r < 0) {
    MemlockState mem{mapped_bytes_, size, current_memlock_limit()};
    return std::unexpected(map_error(kind(), Error("VFIO_IOMMU_MAP_DMA", -r), iova, size, mem));
  }
  mapped_bytes_ += size;
  return {};
}

Status Type1Backend::unmap(Iova iova, uint64_t size) {
  vfio_iommu_type1_dma_unmap u{.argsz = sizeof(u), .flags = 0, .iova = iova.value(), .size = size};
  std::string ctx = fmt::format("iova 0x{:x} size 0x{:x}", iova.value(), size);
  if (int r = sys_.ioctl(container_.get(), VFIO_IOMMU_UNMAP_DMA, &u); r < 0) return fail("VFIO_IOMMU_UNMAP_DMA", -r, ctx);
  mapped_bytes_ -= std::min(mapped_bytes_, static_cast<uint64_t>(u.size));
  if (u.size != size) {
    return fail("VFIO_IOMMU_UNMAP_DMA", ENOENT, ctx + fmt::format(": only 0x{:x} bytes were mapped", u.size));
  }
  return {};
}

Result<std::vector<Range<Iova>>> Type1Backend::iova_ranges() {
  auto info = PINLESS_TRY(this->info());
  if (!info.have_iova_ranges) return std::vector<Range<Iova>>{range_from_inclusive(0, ~uint64_t{0})};
  return info.iova_ranges;
}

}  // namespace pinless::iommu
