// Iommufd: one iommufd context (/dev/iommu, or an fd passed in with --iommufd-fd), and RAII
// handles for the objects created in it. Every object ID (IOAS, HWPT, FAULT) is owned by an
// IommufdObject that IOMMU_DESTROYs it; the Iommufd must outlive all of them.
// Teardown order the owner must keep (declare in this order, destroyed in reverse):
//   Iommufd, IOAS, FAULT (IommufdFault), HWPT, device attachments.
// A HWPT pins its IOAS and FAULT; the fault fd pins its FAULT object (so IommufdFault closes
// the fd before destroying the ID). Heap-allocated for a stable address. Thread-compatible.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>

#include "pinless/base/fd.h"
#include "pinless/base/sys.h"

namespace pinless::iommu {

// An object ID inside an iommufd context, not a file descriptor: it is undone with the
// IOMMU_DESTROY ioctl on the context's fd, never with close(), which is why it is not a
// UniqueFd. Holds the context fd without owning it. Move-only.
class [[nodiscard]] IommufdObject {
 public:
  IommufdObject() = default;
  IommufdObject(Sys& sys, int iommufd, uint32_t id) : sys_(&sys), fd_(iommufd), id_(id) {}
  IommufdObject(IommufdObject&& o) noexcept
      : sys_(o.sys_), fd_(std::exchange(o.fd_, -1)), id_(std::exchange(o.id_, 0)) {}
  IommufdObject& operator=(IommufdObject&& o) noexcept {
    if (this != &o) {
      reset();
      sys_ = o.sys_;
      fd_ = std::exchange(o.fd_, -1);
      id_ = std::exchange(o.id_, 0);
    }
    return *this;
  }
  IommufdObject(const IommufdObject&) = delete;
  IommufdObject& operator=(const IommufdObject&) = delete;
  ~IommufdObject() { reset(); }

  uint32_t id() const { return id_; }
  bool valid() const { return fd_ >= 0; }
  // IOMMU_DESTROY now; failures are logged (EBUSY means an owner destroyed things out of order).
  void reset();

 private:
  Sys* sys_ = nullptr;
  int fd_ = -1;
  uint32_t id_ = 0;
};

// A FAULT object and its fd (read records, write responses). Members in this order so the
// fd closes first: the open fd holds a reference that makes IOMMU_DESTROY fail with EBUSY.
struct IommufdFault {
  IommufdObject object;
  UniqueFd fd;
  uint32_t id() const { return object.id(); }
};

enum class RlimitMode : uint64_t { kPerUser = 0, kPerProcess = 1 };

class Iommufd {
 public:
  // Opens /dev/iommu (ENOENT: hint that CONFIG_IOMMUFD is missing, --iommu-backend=type1).
  static Result<std::unique_ptr<Iommufd>> open(Sys& sys);
  // Takes ownership of an iommufd passed in by a manager (--iommufd-fd N) and checks with
  // IOMMU_OPTION(GET RLIMIT_MODE) that it is one.
  static Result<std::unique_ptr<Iommufd>> adopt(Sys& sys, int fd);

  int fd() const { return fd_.get(); }
  Sys& sys() const { return sys_; }

  Result<IommufdObject> ioas_alloc();
  // Kernel-managed paging HWPT on an IOAS (pt_id), optionally routing I/O page faults to a
  // FAULT object (IOMMU_HWPT_FAULT_ID_VALID; EOPNOTSUPP before 6.13, see dma_errors.h).
  Result<IommufdObject> hwpt_alloc(uint32_t dev_id, uint32_t pt_id, uint32_t flags = 0,
                                   std::optional<uint32_t> fault_id = std::nullopt);
  Result<IommufdFault> fault_queue_alloc();

  Result<uint64_t> get_option(uint32_t option, uint32_t object_id);
  Status set_option(uint32_t option, uint32_t object_id, uint64_t value);
  Result<RlimitMode> rlimit_mode();
  // Needs CAP_SYS_RESOURCE and a context with no objects yet (EBUSY otherwise).
  Status set_rlimit_mode(RlimitMode mode);
  // Per IOAS: false forces PAGE_SIZE IOPTEs.
  Status set_huge_pages(uint32_t ioas_id, bool enable);

 private:
  Iommufd(Sys& sys, UniqueFd fd) : sys_(sys), fd_(std::move(fd)) {}
  Sys& sys_;
  UniqueFd fd_;
};

}  // namespace pinless::iommu
