#include "pinless/iommu/iommufd.h"

#include <fcntl.h>

#include <cerrno>

#include <fmt/format.h>

#include "pinless/base/log.h"
#include "pinless/iommu/dma_errors.h"
#include "pinless/iommu/uapi/iommufd.h"

namespace pinless::iommu {

void IommufdObject::reset() {
  if (fd_ < 0) return;
  iommu_destroy d{.size = sizeof(d), .id = id_};
  if (int r = sys_->ioctl(fd_, IOMMU_DESTROY, &d); r < 0) {
    logger("iommu")->error("IOMMU_DESTROY of object {} failed: errno {} (destroyed out of order?)", id_, -r);
  }
  fd_ = -1;
  id_ = 0;
}

Result<std::unique_ptr<Iommufd>> Iommufd::open(Sys& sys) {
  int fd = sys.open("/dev/iommu", O_RDWR, 0);
  if (fd < 0) return std::unexpected(open_dev_iommu_error(-fd));
  return std::unique_ptr<Iommufd>(new Iommufd(sys, UniqueFd(sys, fd)));
}

Result<std::unique_ptr<Iommufd>> Iommufd::adopt(Sys& sys, int fd) {
  if (fd < 0) return fail("--iommufd-fd", EBADF, fmt::format("fd {}", fd));
  std::unique_ptr<Iommufd> ctx(new Iommufd(sys, UniqueFd(sys, fd)));
  auto mode = ctx->rlimit_mode();
  if (!mode) {
    return std::unexpected(std::move(mode.error())
                               .within(fmt::format("--iommufd-fd {}", fd))
                               .with_hint("the passed fd is not an open /dev/iommu"));
  }
  return ctx;
}

Result<IommufdObject> Iommufd::ioas_alloc() {
  iommu_ioas_alloc a{.size = sizeof(a), .flags = 0, .out_ioas_id = 0};
  if (int r = sys_.ioctl(fd(), IOMMU_IOAS_ALLOC, &a); r < 0) return fail("IOMMU_IOAS_ALLOC", -r);
  return IommufdObject(sys_, fd(), a.out_ioas_id);
}

Result<IommufdObject> Iommufd::hwpt_alloc(uint32_t dev_id, uint32_t pt_id, uint32_t flags,
                                          std::optional<uint32_t> fault_id) {
  iommu_hwpt_alloc h{};
  h.size = sizeof(h);
  h.flags = flags | (fault_id ? uint32_t{IOMMU_HWPT_FAULT_ID_VALID} : 0u);
  h.dev_id = dev_id;
  h.pt_id = pt_id;
  h.data_type = IOMMU_HWPT_DATA_NONE;
  h.fault_id = fault_id.value_or(0);
  if (int r = sys_.ioctl(fd(), IOMMU_HWPT_ALLOC, &h); r < 0) {
    return fail("IOMMU_HWPT_ALLOC", -r, fmt::format("dev {} pt {} flags 0x{:x}", dev_id, pt_id, h.flags));
  }
  return IommufdObject(sys_, fd(), h.out_hwpt_id);
}

Result<IommufdFault> Iommufd::fault_queue_alloc() {
  iommu_fault_alloc a{.size = sizeof(a), .flags = 0, .out_fault_id = 0, .out_fault_fd = 0};
  if (int r = sys_.ioctl(fd(), IOMMU_FAULT_QUEUE_ALLOC, &a); r < 0) return fail("IOMMU_FAULT_QUEUE_ALLOC", -r);
  IommufdFault f;
  f.object = IommufdObject(sys_, fd(), a.out_fault_id);
  f.fd = UniqueFd(sys_, static_cast<int>(a.out_fault_fd));
  return f;
}

Result<uint64_t> Iommufd::get_option(uint32_t option, uint32_t object_id) {
  iommu_option o{};
  o.size = sizeof(o);
  o.option_id = option;
  o.op = IOMMU_OPTION_OP_GET;
  o.object_id = object_id;
  if (int r = sys_.ioctl(fd(), IOMMU_OPTION, &o); r < 0) {
    return fail("IOMMU_OPTION", -r, fmt::format("get option {} of object {}", option, object_id));
  }
  return static_cast<uint64_t>(o.val64);
}

Status Iommufd::set_option(uint32_t option, uint32_t object_id, uint64_t value) {
  iommu_option o{};
  o.size = sizeof(o);
  o.option_id = option;
  o.op = IOMMU_OPTION_OP_SET;
  o.object_id = object_id;
  o.val64 = value;
  if (int r = sys_.ioctl(fd(), IOMMU_OPTION, &o); r < 0) {
    return fail("IOMMU_OPTION", -r, fmt::format("set option {} of object {} to {}", option, object_id, value));
  }
  return {};
}

Result<RlimitMode> Iommufd::rlimit_mode() {
  uint64_t v = PINLESS_TRY(get_option(IOMMU_OPTION_RLIMIT_MODE, 0));
  return v == 0 ? RlimitMode::kPerUser : RlimitMode::kPerProcess;
}

Status Iommufd::set_rlimit_mode(RlimitMode mode) {
  auto st = set_option(IOMMU_OPTION_RLIMIT_MODE, 0, static_cast<uint64_t>(mode));
  if (!st && st.error().err() == EPERM) {
    return std::unexpected(std::move(st.error()).with_hint("changing the accounting mode needs CAP_SYS_RESOURCE"));
  }
  if (!st && st.error().err() == EBUSY) {
    return std::unexpected(std::move(st.error()).with_hint("set the accounting mode before allocating any IOAS"));
  }
  return st;
}

Status Iommufd::set_huge_pages(uint32_t ioas_id, bool enable) {
  return set_option(IOMMU_OPTION_HUGE_PAGES, ioas_id, enable ? 1 : 0);
}

}  // namespace pinless::iommu
