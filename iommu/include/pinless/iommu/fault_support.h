// FaultSupport: what fault-driven DMA needs from a host IOMMU backend beyond map and unmap: a
// fault queue, and a fault-capable page table for a device on the backend's IOAS. Obtained
// from DmaBackend::fault_support() (null when the backend cannot deliver I/O page faults, e.g.
// VFIO type1), so policy code asks the backend instead of holding a second pointer to it.
// Implemented by IommufdBackend; same lifetime and thread-compatibility as the backend.
#pragma once

#include <cstdint>

#include "pinless/base/result.h"
#include "pinless/iommu/iommufd.h"

namespace pinless::iommu {

class FaultSupport {
 public:
  virtual ~FaultSupport() = default;

  // The IOAS the fault page tables sit on (the backend's address space).
  virtual uint32_t ioas_id() const = 0;
  // IOMMU_FAULT_QUEUE_ALLOC: the object and fd that fault records arrive on.
  virtual Result<IommufdFault> alloc_fault_queue() = 0;
  // IOMMU_HWPT_ALLOC of a paging HWPT on the IOAS for `dev_id`, routing its I/O page faults to
  // the fault object `fault_id` (classify errors with dma_errors.h).
  virtual Result<IommufdObject> alloc_fault_hwpt(uint32_t dev_id, uint32_t fault_id) = 0;
};

}  // namespace pinless::iommu
