// UniqueFd: owns one file descriptor and closes it exactly once. Move-only.
// MappedMemory: owns one mmap()ed range and unmaps it exactly once. Move-only.
// These are the only owning fd and mapping types of pinless, and both undo through the Sys
// seam (sys.h): a handle made with a Sys& closes / unmaps through that Sys, so a fake sees
// it; one made without (an fd or mapping that came from libc directly: signalfd, a dup of
// stdout, a read-only file mapping) goes through linux_sys(). The Sys must outlive the
// handle. Both are thread-compatible.
#pragma once

#include <cstddef>
#include <utility>

#include "pinless/base/types.h"

namespace pinless {

class Sys;

class [[nodiscard]] UniqueFd {
 public:
  UniqueFd() = default;
  // An fd obtained from libc directly; closed through linux_sys().
  explicit UniqueFd(int fd) : fd_(fd) {}
  // An fd obtained through `sys` (open, eventfd, memfd_create, an ioctl that returns an fd);
  // closed through the same Sys.
  UniqueFd(Sys& sys, int fd) : sys_(&sys), fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : sys_(o.sys_), fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      sys_ = o.sys_;
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  // Gives up ownership without closing.
  int release() { return std::exchange(fd_, -1); }
  // Closes the fd (through the Sys it came from), then owns `fd`, which is closed through
  // the same Sys.
  void reset(int fd = -1);

 private:
  Sys* sys_ = nullptr;  // nullptr: linux_sys()
  int fd_ = -1;
};

class [[nodiscard]] MappedMemory {
 public:
  MappedMemory() = default;
  // A mapping obtained from libc directly; unmapped through linux_sys().
  MappedMemory(void* addr, size_t size) : addr_(addr), size_(size) {}
  // A mapping obtained through `sys`; unmapped through the same Sys.
  MappedMemory(Sys& sys, void* addr, size_t size) : sys_(&sys), addr_(addr), size_(size) {}
  MappedMemory(MappedMemory&& o) noexcept
      : sys_(o.sys_), addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  MappedMemory& operator=(MappedMemory&& o) noexcept {
    if (this != &o) {
      reset();
      sys_ = o.sys_;
      addr_ = std::exchange(o.addr_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  MappedMemory(const MappedMemory&) = delete;
  MappedMemory& operator=(const MappedMemory&) = delete;
  ~MappedMemory() { reset(); }

  void* get() const { return addr_; }
  uint8_t* bytes() const { return static_cast<uint8_t*>(addr_); }
  Hva hva() const { return hva_of(addr_); }
  size_t size() const { return size_; }
  bool valid() const { return addr_ != nullptr; }
  // Unmaps now (through the Sys the mapping came from).
  void reset();

 private:
  Sys* sys_ = nullptr;  // nullptr: linux_sys()
  void* addr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace pinless
