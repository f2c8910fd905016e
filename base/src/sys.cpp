#include "pinless/base/sys.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

namespace pinless {
namespace {
inline int neg(int r) { return r < 0 ? -errno : r; }
inline ssize_t negs(ssize_t r) { return r < 0 ? -errno : r; }
}  // namespace

int LinuxSys::open(const char* path, int flags, mode_t mode) { return neg(::open(path, flags | O_CLOEXEC, mode)); }
int LinuxSys::close(int fd) { return neg(::close(fd)); }
int LinuxSys::ioctl(int fd, unsigned long request, void* arg) { return neg(::ioctl(fd, request, arg)); }
int LinuxSys::ioctl_int(int fd, unsigned long request, unsigned long arg) { return neg(::ioctl(fd, request, arg)); }
void* LinuxSys::mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off, int* err) {
  void* p = ::mmap(addr, len, prot, flags, fd, off);
  if (p == MAP_FAILED && err != nullptr) *err = errno;
  return p;
}
int LinuxSys::munmap(void* addr, size_t len) { return neg(::munmap(addr, len)); }
ssize_t LinuxSys::read(int fd, void* buf, size_t n) { return negs(::read(fd, buf, n)); }
ssize_t LinuxSys::write(int fd, const void* buf, size_t n) { return negs(::write(fd, buf, n)); }
ssize_t LinuxSys::pread(int fd, void* buf, size_t n, off_t off) { return negs(::pread(fd, buf, n, off)); }
ssize_t LinuxSys::pwrite(int fd, const void* buf, size_t n, off_t off) { return negs(::pwrite(fd, buf, n, off)); }
int LinuxSys::eventfd(unsigned int initval, int flags) { return neg(::eventfd(initval, flags | EFD_CLOEXEC)); }
int LinuxSys::memfd_create(const char* name, unsigned int flags) { return neg(::memfd_create(name, flags | MFD_CLOEXEC)); }
int LinuxSys::ftruncate(int fd, off_t len) { return neg(::ftruncate(fd, len)); }

Sys& linux_sys() {
  static LinuxSys sys;
  return sys;
}

Result<UniqueFd> sys_open(Sys& sys, const char* path, int flags, const char* what) {
  int fd = sys.open(path, flags, 0);
  if (fd < 0) return fail(what != nullptr ? what : "open", -fd, path);
  return UniqueFd(sys, fd);
}

Result<int> sys_ioctl(Sys& sys, int fd, unsigned long request, void* arg, const char* name) {
  int r = sys.ioctl(fd, request, arg);
  if (r < 0) return fail(name, -r);
  return r;
}

Result<int> sys_ioctl_int(Sys& sys, int fd, unsigned long request, unsigned long arg, const char* name) {
  int r = sys.ioctl_int(fd, request, arg);
  if (r < 0) return fail(name, -r);
  return r;
}

}  // namespace pinless
