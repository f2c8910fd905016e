// Turning raw errnos from the host IOMMU APIs into errors a user can act on, and reading
// capability errors (can this kernel/device do I/O page faults?) into typed reasons the VMM
// uses to apply --dma-fallback=pin|fail. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "pinless/base/result.h"
#include "pinless/iommu/dma_backend.h"

namespace pinless::iommu {

// Context for the RLIMIT_MEMLOCK hint on an ENOMEM from a MAP.
struct MemlockState {
  uint64_t already_pinned = 0;  // bytes this VMM has mapped (pinned) before the failing MAP
  uint64_t request = 0;         // bytes of the failing MAP
  std::optional<uint64_t> limit;  // RLIMIT_MEMLOCK soft limit (nullopt = unknown/unlimited)
};
// The current RLIMIT_MEMLOCK soft limit, or nullopt if unlimited.
std::optional<uint64_t> current_memlock_limit();

// Wraps a MAP failure. For ENOMEM it says how much must be lockable and how to allow it
// (`ulimit -l`, `prlimit`, CAP_IPC_LOCK; for iommufd also per-user accounting and
// IOMMU_OPTION_RLIMIT_MODE). Other errnos pass through with the IOVA range as context.
Error map_error(BackendKind kind, Error e, Iova iova, uint64_t size, const MemlockState& mem);

// Open failures of the device nodes: ENOENT on /dev/iommu says CONFIG_IOMMUFD is missing
// and --iommu-backend=type1 exists; on /dev/vfio/vfio says modprobe vfio-pci; EACCES says
// who may open the node.
Error open_dev_iommu_error(int err);
Error open_vfio_container_error(int err);

// Why fault-driven DMA is not available for a device.
enum class FaultUnsupported : uint8_t {
  kKernelTooOld,    // HWPT_ALLOC(paging, FAULT_ID_VALID) -> EOPNOTSUPP: kernel < 6.13
  kNoFaultQueue,    // FAULT_QUEUE_ALLOC -> ENOTTY: kernel < 6.11 (no fault objects at all)
  kNoPri,           // attach of a fault-capable HWPT -> ENODEV/EOPNOTSUPP: no PRI/stall on device/IOMMU
  kType1,           // the VFIO type1 backend has no fault delivery
  kOther,           // anything else: the Error says what
};
const char* fault_unsupported_name(FaultUnsupported r);

struct FaultSupportError {
  FaultUnsupported reason;
  Error error;  // with a hint naming the reason and --dma-fallback
};
// Classifies a failed IOMMU_FAULT_QUEUE_ALLOC.
FaultSupportError classify_fault_queue_alloc(Error e);
// Classifies a failed IOMMU_HWPT_ALLOC with IOMMU_HWPT_FAULT_ID_VALID on an IOAS.
FaultSupportError classify_fault_hwpt_alloc(Error e);
// Classifies a failed attach (VFIO_DEVICE_ATTACH_IOMMUFD_PT) of a device to a fault HWPT.
FaultSupportError classify_fault_attach(Error e, const std::string& device);

}  // namespace pinless::iommu
