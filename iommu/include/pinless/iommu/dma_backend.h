// DmaBackend: the small interface between DMA policy (static pin, fault-driven premap,
// later the virtio-iommu device) and the host IOMMU API that backs it (iommufd IOAS or a
// VFIO type1 container). Compare Cloud Hypervisor's ExternalDmaMapping: map and unmap, plus
// the usable IOVA ranges. Implementations are thread-compatible: the owner serialises calls
// (in pinless: the builder before boot, then the event-loop thread).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pinless/base/result.h"
#include "pinless/base/types.h"

namespace pinless::iommu {

class FaultSupport;

// What a device may do to a mapping. Values are bit flags.
enum class Perm : uint8_t { kRead = 1, kWrite = 2, kReadWrite = 3 };

constexpr bool allows(Perm have, Perm want) {
  return (static_cast<uint8_t>(have) & static_cast<uint8_t>(want)) == static_cast<uint8_t>(want);
}
const char* perm_name(Perm p);

enum class BackendKind : uint8_t { kIommufd, kType1 };
const char* backend_name(BackendKind k);

class DmaBackend {
 public:
  virtual ~DmaBackend() = default;

  // Maps [iova, iova + size) to the host memory at hva. size and both addresses must be
  // page aligned. The kernel pins the pages now (RLIMIT_MEMLOCK / per-user accounting).
  virtual Status map(Iova iova, Hva hva, uint64_t size, Perm perm) = 0;
  // Unmaps exactly a range earlier passed to map() (neither API splits mappings reliably).
  virtual Status unmap(Iova iova, uint64_t size) = 0;
  // IOVA ranges a mapping may use now (they shrink as devices with reserved regions attach).
  virtual Result<std::vector<Range<Iova>>> iova_ranges() = 0;
  // Bytes currently mapped through this backend (what the kernel has pinned for us).
  virtual uint64_t mapped_bytes() const = 0;
  virtual BackendKind kind() const = 0;
  // Fault-driven DMA on this backend (fault_support.h), or null when it has none (type1).
  virtual FaultSupport* fault_support() { return nullptr; }
};

// [start, last] as the kernel reports it (inclusive) -> a half-open Range. A range reaching
// 2^64 loses its last byte, which no page-aligned mapping can use anyway.
constexpr Range<Iova> range_from_inclusive(uint64_t start, uint64_t last) {
  return {Iova(start), last == ~uint64_t{0} ? last - start : last - start + 1};
}

// Intersects `want` with the allowed ranges: the pieces that can be mapped, ascending.
// Used to split a guest RAM region at IOVA holes such as the x86 MSI window.
std::vector<Range<Iova>> clip_to_ranges(Range<Iova> want, const std::vector<Range<Iova>>& allowed);

}  // namespace pinless::iommu
