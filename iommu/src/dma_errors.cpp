#include "pinless/iommu/dma_errors.h"

#include <sys/resource.h>

#include <cerrno>
#include <fmt/format.h>

#include "pinless/base/size.h"

namespace pinless::iommu {

std::optional<uint64_t> current_memlock_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return std::nullopt;
  return static_cast<uint64_t>(rl.rlim_cur);
}

Error map_error(BackendKind kind, Error e, Iova iova, uint64_t size, const MemlockState& mem) {
  std::string ctx = fmt::format("iova 0x{:x}-0x{:x}", iova.value(), iova.value() + size - 1);
  if (e.err() != ENOMEM) return std::move(e).within(ctx);

  uint64_t need = mem.already_pinned + mem.request;
  uint64_t need_kib = align_up(need, kKiB) / kKiB;
  std::string have = mem.limit ? format_size(*mem.limit) : std::string("unlimited");
  std::string hint = fmt::format(
      "pinning needs RLIMIT_MEMLOCK >= {} ({} already pinned + {} for this mapping; limit now {}): "
      "raise it with `ulimit -l {}` in the launching shell, `prlimit --pid <pid> --memlock={}:{}`, "
      "LimitMEMLOCK= in a systemd unit, or run with CAP_IPC_LOCK",
      format_size(need), format_size(mem.already_pinned), format_size(mem.request), have, need_kib,
      need, need);
  if (kind == BackendKind::kIommufd && mem.limit && need <= *mem.limit) {
    // The VM alone fits: the rest of the per-user budget is pinned by other processes.
    hint = fmt::format(
        "this VM's {} fits RLIMIT_MEMLOCK ({}) on its own, but iommufd charges pinned pages per user "
        "(IOMMU_OPTION_RLIMIT_MODE=0), and other processes of this user (other VMs?) have pinned the rest "
        "of that budget: the limit must cover every VM of the user together (raise it with `ulimit -l`, "
        "`prlimit`, LimitMEMLOCK= in a systemd unit), or run with CAP_IPC_LOCK, or run each VM as its own user, or switch "
        "to per-process accounting (IOMMU_OPTION_RLIMIT_MODE=1, needs CAP_SYS_RESOURCE)",
        format_size(need), have);
  } else if (kind == BackendKind::kIommufd) {
    hint +=
        "; iommufd charges pinned pages per user by default (IOMMU_OPTION_RLIMIT_MODE=0: every "
        "process of this user shares one RLIMIT_MEMLOCK budget), per process with mode 1 "
        "(needs CAP_SYS_RESOURCE, set before any IOAS exists)";
  }
  hint += "; fault-driven DMA (a dma=fault RAM region) pins only what devices touch";
  return std::move(e).within(ctx).with_hint(std::move(hint));
}

Error open_dev_iommu_error(int err) {
  Error e("open", err, "/dev/iommu");
  if (err == ENOENT || err == ENODEV || err == ENXIO) {
    return std::move(e).with_hint(
        "the kernel lacks CONFIG_IOMMUFD (no /dev/iommu); rebuild it with CONFIG_IOMMUFD=y and "
        "CONFIG_VFIO_DEVICE_CDEV=y, or use --iommu-backend=type1 (legacy VFIO container)");
  }
  if (err == EACCES || err == EPERM) {
    return std::move(e).with_hint("no permission on /dev/iommu: run as root or give this user access to the node");
  }
  return e;
}

Error open_vfio_container_error(int err) {
  Error e("open", err, "/dev/vfio/vfio");
  if (err == ENOENT || err == ENODEV || err == ENXIO) {
    return std::move(e).with_hint(
        "VFIO is not loaded: `modprobe vfio-pci` (and vfio_iommu_type1), then bind the device to vfio-pci");
  }
  if (err == EACCES || err == EPERM) {
    return std::move(e).with_hint("no permission on /dev/vfio/vfio: run as root or give this user access");
  }
  return e;
}

const char* fault_unsupported_name(FaultUnsupported r) {
  switch (r) {
    case FaultUnsupported::kKernelTooOld: return "kernel-too-old";
    case FaultUnsupported::kNoFaultQueue: return "no-fault-queue";
    case FaultUnsupported::kNoPri: return "no-pri";
    case FaultUnsupported::kType1: return "type1";
    case FaultUnsupported::kOther: return "other";
  }
  return "?";
}

namespace {
constexpr const char* kFallback = "; --dma-fallback=pin maps and pins the region instead, --dma-fallback=fail stops";
}  // namespace

FaultSupportError classify_fault_queue_alloc(Error e) {
  if (e.err() == ENOTTY) {
    return {FaultUnsupported::kNoFaultQueue,
            std::move(e).with_hint(std::string("this kernel has no iommufd fault queue (needs >= 6.11)") + kFallback)};
  }
  return {FaultUnsupported::kOther, std::move(e)};
}

FaultSupportError classify_fault_hwpt_alloc(Error e) {
  if (e.err() == EOPNOTSUPP) {
    return {FaultUnsupported::kKernelTooOld,
            std::move(e).with_hint(std::string("this kernel refuses IOMMU_HWPT_FAULT_ID_VALID on a paging HWPT "
                                               "(host-stage I/O page faults need >= 6.13)") + kFallback)};
  }
  if (e.err() == ENOTTY) {
    return {FaultUnsupported::kNoFaultQueue,
            std::move(e).with_hint(std::string("this kernel has no IOMMU_HWPT_ALLOC") + kFallback)};
  }
  return {FaultUnsupported::kOther, std::move(e)};
}

FaultSupportError classify_fault_attach(Error e, const std::string& device) {
  if (e.err() == ENODEV || e.err() == EOPNOTSUPP) {
    return {FaultUnsupported::kNoPri,
            std::move(e).within(device).with_hint(
                std::string("the device or its IOMMU cannot raise I/O page faults (no PCIe PRI/ATS, or IOPF "
                            "not enabled in the IOMMU driver)") + kFallback)};
  }
  return {FaultUnsupported::kOther, std::move(e).within(device)};
}

}  // namespace pinless::iommu
