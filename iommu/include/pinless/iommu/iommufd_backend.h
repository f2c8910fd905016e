// IommufdBackend: DmaBackend over one iommufd IOAS (one guest physical address space,
// shared by every device of the VM). Owns the IOAS ID; borrows the Iommufd context, which
// must outlive it. IOVA = the caller's choice (always FIXED_IOVA: pinless never lets the
// kernel pick). Also the FaultSupport of that IOAS (fault queues, fault HWPTs on it).
// Heap-allocated so DmaMappings can point at it. Thread-compatible.
#pragma once

#include <memory>
#include <vector>

#include "pinless/iommu/dma_backend.h"
#include "pinless/iommu/fault_support.h"
#include "pinless/iommu/iommufd.h"

namespace pinless::iommu {

class IommufdBackend final : public DmaBackend, public FaultSupport {
 public:
  // Allocates a fresh IOAS in `ctx`.
  static Result<std::unique_ptr<IommufdBackend>> create(Iommufd& ctx);

  uint32_t ioas_id() const override { return ioas_.id(); }
  Iommufd& ctx() const { return ctx_; }

  Status map(Iova iova, Hva hva, uint64_t size, Perm perm) override;
  Status unmap(Iova iova, uint64_t size) override;
  // IOMMU_IOAS_IOVA_RANGES; grows the array and retries when the kernel says EMSGSIZE.
  Result<std::vector<Range<Iova>>> iova_ranges() override;
  uint64_t mapped_bytes() const override { return mapped_bytes_; }
  BackendKind kind() const override { return BackendKind::kIommufd; }
  FaultSupport* fault_support() override { return this; }

  Result<IommufdFault> alloc_fault_queue() override { return ctx_.fault_queue_alloc(); }
  Result<IommufdObject> alloc_fault_hwpt(uint32_t dev_id, uint32_t fault_id) override {
    return ctx_.hwpt_alloc(dev_id, ioas_id(), 0, fault_id);
  }

  // IOMMU_IOAS_COPY: makes [src_iova, +size) of `src` visible at dst_iova here, sharing the
  // source's pinned pages instead of pinning again. Any part of mapped source range works
  // (the uapi header says "exactly match", the kernel and its copy_sweep selftest accept a
  // sub-range); a hole is ENOENT, a taken destination EEXIST. Counts toward mapped_bytes().
  Status copy_from(const IommufdBackend& src, Iova src_iova, Iova dst_iova, uint64_t size, Perm perm);
  Status set_huge_pages(bool enable) { return ctx_.set_huge_pages(ioas_id(), enable); }

 private:
  IommufdBackend(Iommufd& ctx, IommufdObject ioas) : ctx_(ctx), ioas_(std::move(ioas)) {}
  Iommufd& ctx_;
  IommufdObject ioas_;
  uint64_t mapped_bytes_ = 0;
};

}  // namespace pinless::iommu
