// SysFd: owns one file descriptor obtained through the Sys seam and closes it through the
// same Sys, so that fakes see the close (base's UniqueFd calls ::close directly, which a
// FakeSys fd never reaches). Used for /dev/iommu, /dev/vfio/vfio, group and fault-queue fds.
// Move-only; thread-compatible. The Sys must outlive the SysFd.
#pragma once

#include <utility>

#include "pinless/base/sys.h"

namespace pinless::iommu {

class [[nodiscard]] SysFd {
 public:
  SysFd() = default;
  SysFd(Sys& sys, int fd) : sys_(&sys), fd_(fd) {}
  SysFd(SysFd&& o) noexcept : sys_(o.sys_), fd_(std::exchange(o.fd_, -1)) {}
  SysFd& operator=(SysFd&& o) noexcept {
    if (this != &o) {
      reset();
      sys_ = o.sys_;
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  SysFd(const SysFd&) = delete;
  SysFd& operator=(const SysFd&) = delete;
  ~SysFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  Sys* sys() const { return sys_; }
  void reset() {
    if (fd_ >= 0 && sys_ != nullptr) (void)sys_->close(fd_);
    fd_ = -1;
  }

 private:
  Sys* sys_ = nullptr;
  int fd_ = -1;
};

}  // namespace pinless::iommu
