// The syscall seam. Every open/ioctl/mmap/eventfd that touches KVM, VFIO or iommufd goes
// through a Sys&, injected into constructors. Production code uses LinuxSys (a thin
// pass-through); unit tests use a scripted fake (tests/fakes/) so that KVM, VFIO and iommufd
// logic runs without /dev/kvm or an IOMMU.
//
// Conventions: every call returns the syscall's value on success and -errno on failure
// (never sets errno for the caller), so results are easy to script in fakes.
// LinuxSys is thread-safe (stateless); fakes are thread-compatible.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "pinless/base/fd.h"
#include "pinless/base/result.h"

namespace pinless {

class Sys {
 public:
  virtual ~Sys() = default;
  virtual int open(const char* path, int flags, mode_t mode = 0) = 0;
  virtual int close(int fd) = 0;
  // ioctl with a pointer argument (structs) ...
  virtual int ioctl(int fd, unsigned long request, void* arg) = 0;
  // ... and with an integer argument (KVM_CREATE_VCPU, KVM_CHECK_EXTENSION, ...).
  virtual int ioctl_int(int fd, unsigned long request, unsigned long arg) = 0;
  // Returns the mapping, or MAP_FAILED with *err set to the errno.
  virtual void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off, int* err) = 0;
  virtual int munmap(void* addr, size_t len) = 0;
  virtual ssize_t read(int fd, void* buf, size_t n) = 0;
  virtual ssize_t write(int fd, const void* buf, size_t n) = 0;
  virtual ssize_t pread(int fd, void* buf, size_t n, off_t off) = 0;
  virtual ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) = 0;
  virtual int eventfd(unsigned int initval, int flags) = 0;
  virtual int memfd_create(const char* name, unsigned int flags) = 0;
  virtual int ftruncate(int fd, off_t len) = 0;
};

// The real kernel.
class LinuxSys final : public Sys {
 public:
  int open(const char* path, int flags, mode_t mode) override;
  int close(int fd) override;
  int ioctl(int fd, unsigned long request, void* arg) override;
  int ioctl_int(int fd, unsigned long request, unsigned long arg) override;
  void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off, int* err) override;
  int munmap(void* addr, size_t len) override;
  ssize_t read(int fd, void* buf, size_t n) override;
  ssize_t write(int fd, const void* buf, size_t n) override;
  ssize_t pread(int fd, void* buf, size_t n, off_t off) override;
  ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) override;
  int eventfd(unsigned int initval, int flags) override;
  int memfd_create(const char* name, unsigned int flags) override;
  int ftruncate(int fd, off_t len) override;
};

// The process-wide LinuxSys instance.
Sys& linux_sys();

// Convenience wrappers that turn the -errno convention into Result.
Result<UniqueFd> sys_open(Sys& sys, const char* path, int flags, const char* what = nullptr);
Result<int> sys_ioctl(Sys& sys, int fd, unsigned long request, void* arg, const char* name);
Result<int> sys_ioctl_int(Sys& sys, int fd, unsigned long request, unsigned long arg, const char* name);

}  // namespace pinless
