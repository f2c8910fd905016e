// DmaConfig: how guest RAM is made reachable for DMA by assigned devices -- the per-region
// policy (--ram-region), what to do when fault-driven DMA is impossible (--dma-fallback), the
// pin cap (--pin-limit) and test-only IOMMUFD_TEST mock devices (--device mock,...). Plain
// data plus pure parsers (unit-tested); each error's message() is one line naming the option,
// the problem and the fix, exactly what the CLI prints.
// See docs/dma.md for the syntax and the semantics.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pinless/base/result.h"
#include "pinless/iommu/dma_policy.h"

namespace pinless::vmm {

// One --ram-region: bytes [offset, offset + size) of guest RAM, counted as --memory counts
// them (the 32-bit PCI hole is not part of RAM, so offsets do not move when RAM is split).
struct RamRegionConfig {
  uint64_t offset = 0;
  uint64_t size = 0;
  bool fault = false;  // dma=fault (else dma=pin)
  iommu::FaultPolicy fault_policy;  // premap=, window= (defaults: iommu::FaultPolicy's)
  uint64_t end() const { return offset + size; }
};

// --device mock,idev=I,stdev=S,home=H: an IOMMUFD_TEST mock device (kernel selftest driver)
// created by the caller on the iommufd it passes with --iommufd-fd; pinless attaches it to
// its own page tables and moves it back onto IOAS H at exit. For tests of fault-driven DMA.
struct MockDeviceConfig {
  uint32_t idev = 0;
  uint32_t stdev = 0;
  uint32_t home = 0;
};

struct DmaConfig {
  std::vector<RamRegionConfig> regions;  // sorted by offset, disjoint; RAM not named: pin
  bool fallback_pin = false;             // --dma-fallback=pin (default fail)
  uint64_t pin_limit = 0;                // bytes; 0 = no cap
  bool reclaim = false;                  // --pin-limit ...,reclaim=on
  std::vector<MockDeviceConfig> mocks;
  bool any_fault() const;
};

// "OFFSET:SIZE,dma=pin|fault[,premap=N][,window=forward|aligned|hint]". Appends to out.
Status parse_ram_region_option(const std::string& value, DmaConfig* out);
// Checks the regions against the guest RAM size (inside RAM, 4 KiB aligned, disjoint) and
// sorts them. Call after --memory is known.
Status check_ram_regions(uint64_t memory_size, DmaConfig* dma);
// "SIZE[,reclaim=on|off]".
Status parse_pin_limit_option(const std::string& value, DmaConfig* out);
// "mock,idev=I,stdev=S,home=H" (the leading "mock" included).
Status parse_mock_device_option(const std::string& value, DmaConfig* out);

}  // namespace pinless::vmm
