// A Sys for code that only reads and writes an fd it was given (the fault queue's fd): read()
// and write() are the subclass's; every other call fails with ENOSYS, so a stray open, ioctl
// or mmap shows up as an error instead of touching the host.
#pragma once

#include <cerrno>

#include "pinless/base/sys.h"

namespace pinless::testing {

class ReadWriteSys : public Sys {
 public:
  int open(const char*, int, mode_t) override { return -ENOSYS; }
  int close(int) override { return 0; }
  int ioctl(int, unsigned long, void*) override { return -ENOSYS; }
  int ioctl_int(int, unsigned long, unsigned long) override { return -ENOSYS; }
  void* mmap(void*, size_t, int, int, int, off_t, int* err) override {
    *err = ENOSYS;
    return reinterpret_cast<void*>(-1);
  }
  int munmap(void*, size_t) override { return -ENOSYS; }
  ssize_t pread(int, void*, size_t, off_t) override { return -ENOSYS; }
  ssize_t pwrite(int, const void*, size_t, off_t) override { return -ENOSYS; }
  int eventfd(unsigned int, int) override { return -ENOSYS; }
  int memfd_create(const char*, unsigned int) override { return -ENOSYS; }
  int ftruncate(int, off_t) override { return -ENOSYS; }
};

}  // namespace pinless::testing
