#include "fakes/fake_sys.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

namespace pinless::testing {

FakeSys::~FakeSys() {
  for (auto& [addr, len] : mappings_) ::munmap(addr, len);
}

void FakeSys::on_open(const std::string& path, OpenFn fn) {
  opens_[path] = fn ? std::move(fn) : OpenFn([this](const char*, int) { return new_fd(); });
}
void FakeSys::on_ioctl(unsigned long request, IoctlFn fn) { ioctls_[request] = std::move(fn); }

size_t FakeSys::count(unsigned long request) const {
  size_t n = 0;
  for (const auto& c : calls_) n += (c.what == "ioctl" && c.request == request);
  return n;
}
size_t FakeSys::count_what(const std::string& what) const {
  size_t n = 0;
  for (const auto& c : calls_) n += (c.what == what);
  return n;
}

void* FakeSys::mapping_of_size(size_t len) const {
  for (const auto& [addr, size] : mappings_) {
    if (size == len) return addr;
  }
  return nullptr;
}

int FakeSys::new_fd() {
  int fd = next_fd_++;
  open_[fd] = "";
  return fd;
}

int FakeSys::open(const char* path, int flags, mode_t) {
  record({"open", -1, 0, path});
  auto it = opens_.find(path);
  if (it == opens_.end()) return -ENOENT;
  int fd = it->second(path, flags);
  if (fd >= 0) open_[fd] = path;
  return fd;
}

int FakeSys::close(int fd) {
  record({"close", fd, 0, {}});
  if (is_fake(fd)) {
    open_.erase(fd);
    return 0;
  }
  return ::close(fd) < 0 ? -errno : 0;
}

int FakeSys::ioctl(int fd, unsigned long request, void* arg) {
  record({"ioctl", fd, request, {}});
  auto it = ioctls_.find(request);
  if (it == ioctls_.end()) return -ENOTTY;
  return it->second(fd, request, arg);
}

int FakeSys::ioctl_int(int fd, unsigned long request, unsigned long arg) {
  return ioctl(fd, request, reinterpret_cast<void*>(arg));
}

void* FakeSys::mmap(void* addr, size_t len, int prot, int flags, int fd, off_t, int* err) {
  record({"mmap", fd, 0, {}});
  if (mmap_err_ != 0) {
    if (err != nullptr) *err = mmap_err_;
    mmap_err_ = 0;
    return MAP_FAILED;
  }
  // Fake fds have no backing: hand out private anonymous memory instead.
  void* p = ::mmap(addr, len, prot, (flags & ~MAP_SHARED) | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    if (err != nullptr) *err = errno;
    return p;
  }
  mappings_[p] = len;
  return p;
}

int FakeSys::munmap(void* addr, size_t len) {
  record({"munmap", -1, 0, {}});
  auto it = mappings_.find(addr);
  if (it == mappings_.end()) return -EINVAL;
  mappings_.erase(it);
  return ::munmap(addr, len) < 0 ? -errno : 0;
}

ssize_t FakeSys::read(int fd, void* buf, size_t n) { return pread(fd, buf, n, -1); }
ssize_t FakeSys::write(int fd, const void* buf, size_t n) { return pwrite(fd, buf, n, -1); }

ssize_t FakeSys::pread(int fd, void* buf, size_t n, off_t off) {
  record({"read", fd, 0, {}});
  if (!is_fake(fd)) {
    ssize_t r = off < 0 ? ::read(fd, buf, n) : ::pread(fd, buf, n, off);
    return r < 0 ? -errno : r;
  }
  return read_fn_ ? read_fn_(fd, buf, n, off) : -EIO;
}

ssize_t FakeSys::pwrite(int fd, const void* buf, size_t n, off_t off) {
  record({"write", fd, 0, {}});
  if (!is_fake(fd)) {
    ssize_t r = off < 0 ? ::write(fd, buf, n) : ::pwrite(fd, buf, n, off);
    return r < 0 ? -errno : r;
  }
  return write_fn_ ? write_fn_(fd, const_cast<void*>(buf), n, off) : -EIO;
}

int FakeSys::eventfd(unsigned int initval, int flags) {
  record({"eventfd", -1, 0, {}});
  int fd = ::eventfd(initval, flags | EFD_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

int FakeSys::memfd_create(const char* name, unsigned int flags) {
  record({"memfd_create", -1, 0, name});
  int fd = ::memfd_create(name, flags | MFD_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

int FakeSys::ftruncate(int fd, off_t len) {
  record({"ftruncate", fd, 0, {}});
  if (is_fake(fd)) return 0;
  return ::ftruncate(fd, len) < 0 ? -errno : 0;
}

}  // namespace pinless::testing
