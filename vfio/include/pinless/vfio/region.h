// VFIO region and IRQ descriptions and the pure logic around them: parsing the capability
// chain of VFIO_DEVICE_GET_REGION_INFO (sparse mmap areas), and working out which parts of a
// BAR may be mmap()ed into the guest (the kernel's sparse areas minus the pages holding the
// MSI-X table and PBA, which must be trapped and emulated). Pure functions, value types;
// thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "pinless/base/types.h"

namespace pinless::vfio {

struct RegionInfo {
  uint32_t index = 0;
  uint32_t flags = 0;    // VFIO_REGION_INFO_FLAG_{READ,WRITE,MMAP,CAPS}
  uint64_t size = 0;
  uint64_t offset = 0;   // of the region in the device fd (pread/pwrite/mmap)
  // Sparse mmap areas (offsets relative to the region); empty + !sparse = whole region
  // mmappable if FLAG_MMAP is set.
  bool sparse = false;
  std::vector<Range<uint64_t>> areas;
  bool mmappable() const;
};

struct IrqInfo {
  uint32_t index = 0;
  uint32_t flags = 0;
  uint32_t count = 0;
};

// Walks the capability chain in a VFIO_DEVICE_GET_REGION_INFO buffer (the struct followed
// by its capabilities; `cap_offset` from the struct). Fills `info.sparse/areas` from a
// VFIO_REGION_INFO_CAP_SPARSE_MMAP. Bounds- and loop-checked: a malformed chain stops the
// walk (returns false) without reading outside `buf`.
bool parse_region_caps(std::span<const uint8_t> buf, uint32_t cap_offset, RegionInfo& info);

// The pieces of [0, region size) to mmap: the kernel's mmappable areas (all of it when not
// sparse) minus every `trap` range rounded out to whole pages (`page` bytes). Ascending,
// page-aligned, empty pieces dropped.
std::vector<Range<uint64_t>> mmap_pieces(const RegionInfo& region, const std::vector<Range<uint64_t>>& traps,
                                         uint64_t page = kPageSize);

}  // namespace pinless::vfio
