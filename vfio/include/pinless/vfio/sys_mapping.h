// SysMapping: one mmap() obtained through the Sys seam, unmapped through the same Sys (so
// fakes see it). Used for BAR mappings of VFIO devices. Move-only; thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "pinless/base/sys.h"

namespace pinless::vfio {

class [[nodiscard]] SysMapping {
 public:
  SysMapping() = default;
  SysMapping(Sys& sys, void* addr, size_t size) : sys_(&sys), addr_(addr), size_(size) {}
  SysMapping(SysMapping&& o) noexcept
      : sys_(o.sys_), addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  SysMapping& operator=(SysMapping&& o) noexcept {
    if (this != &o) {
      reset();
      sys_ = o.sys_;
      addr_ = std::exchange(o.addr_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  SysMapping(const SysMapping&) = delete;
  SysMapping& operator=(const SysMapping&) = delete;
  ~SysMapping() { reset(); }

  void* get() const { return addr_; }
  uint8_t* bytes() const { return static_cast<uint8_t*>(addr_); }
  size_t size() const { return size_; }
  void reset() {
    if (addr_ != nullptr && sys_ != nullptr) (void)sys_->munmap(addr_, size_);
    addr_ = nullptr;
    size_ = 0;
  }

 private:
  Sys* sys_ = nullptr;
  void* addr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace pinless::vfio
