// DMA policy as plain values: how a DMA domain (one host IOAS or type1 container) makes its
// regions reachable. One FaultPolicy type with the one set of defaults used everywhere (CLI,
// DmaDomain, FaultEngine, premap window math); DmaRegion and DmaPolicy describe a whole
// domain for DmaDomain::create(). Value types; thread-compatible. See docs/dma.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pinless/base/result.h"
#include "pinless/base/types.h"

namespace pinless::iommu {

// Which pages to map along with a faulting one (fault_window.h has the math).
enum class WindowPolicy : uint8_t { kForward, kAligned, kHint };
Result<WindowPolicy> parse_window_policy(const std::string& text);  // "forward" | "aligned" | "hint"
const char* window_policy_name(WindowPolicy p);

// Pages of 4 KiB mapped per fault by default (2 MiB: one large IOPTE with the aligned window,
// and the 2021 kernel attempt's 512-page PREMAP_LEN), and the most a region may ask for.
constexpr uint64_t kDefaultPremapPages = 512;
constexpr uint64_t kMaxPremapPages = 1u << 18;  // 1 GiB windows at most

// How a fault region answers a fault: a premap window of `premap_pages` pages placed by
// `window`; with kHint a device-supplied length, capped at max_hint_pages (the device is
// guest-driven, so its length is never trusted uncapped).
struct FaultPolicy {
  uint64_t premap_pages = kDefaultPremapPages;  // window size N, >= 1
  WindowPolicy window = WindowPolicy::kAligned;
  uint64_t max_hint_pages = 512;
};

// One region of a domain: [iova, iova + size) is backed by host memory at hva, which is
// guest-physical gpa. fault: mapped on demand through the fault queue (else pinned up front).
// name + offset name it in messages and the summary ("ram" + 1G = the second GiB of RAM).
struct DmaRegion {
  Range<Iova> iova;
  Gpa gpa;
  Hva hva;
  std::string name = "ram";
  uint64_t offset = 0;
  bool fault = false;
  FaultPolicy fault_policy;
};

// A whole domain. regions: disjoint, ascending IOVA.
struct DmaPolicy {
  std::vector<DmaRegion> regions;
  bool fallback_pin = false;  // fault mode impossible: pin the fault regions (else fail)
  uint64_t pin_limit = 0;     // bytes; 0 = no cap
  bool reclaim = false;       // at the cap, unmap the coldest fault windows to make room
};

}  // namespace pinless::iommu
