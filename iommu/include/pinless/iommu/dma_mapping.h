// DmaMapping: RAII handle for one successful DmaBackend::map(). Its destructor unmaps, so a
// multi-step setup that fails half way rolls back by itself. Move-only; thread-compatible.
// The backend must outlive every DmaMapping made on it (declare mappings after the backend).
#pragma once

#include <cstdint>
#include <utility>

#include "pinless/iommu/dma_backend.h"

namespace pinless::iommu {

class [[nodiscard]] DmaMapping {
 public:
  DmaMapping() = default;
  // Maps and returns the handle, or the backend's error (nothing mapped then).
  static Result<DmaMapping> create(DmaBackend& backend, Iova iova, Hva hva, uint64_t size, Perm perm);

  DmaMapping(DmaMapping&& o) noexcept
      : backend_(std::exchange(o.backend_, nullptr)), iova_(o.iova_), size_(std::exchange(o.size_, 0)) {}
  DmaMapping& operator=(DmaMapping&& o) noexcept {
    if (this != &o) {
      reset();
      backend_ = std::exchange(o.backend_, nullptr);
      iova_ = o.iova_;
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  DmaMapping(const DmaMapping&) = delete;
  DmaMapping& operator=(const DmaMapping&) = delete;
  ~DmaMapping() { reset(); }

  Iova iova() const { return iova_; }
  uint64_t size() const { return size_; }
  bool valid() const { return backend_ != nullptr; }
  // Unmaps now; an unmap failure is logged (nothing else can be done in a destructor).
  void reset();
  // Unmaps now and reports the result.
  Status release();

 private:
  DmaMapping(DmaBackend& b, Iova iova, uint64_t size) : backend_(&b), iova_(iova), size_(size) {}
  DmaBackend* backend_ = nullptr;
  Iova iova_;
  uint64_t size_ = 0;
};

}  // namespace pinless::iommu
