// DmaDomain: one host DMA address space (an iommufd IOAS or a type1 container) and what its
// devices may reach through it, region by region (docs/dma.md):
//   pin   regions are mapped and pinned by create() (PinnedRegion: parallel population, as
//         few MAP calls as the IOVA holes allow);
//   fault regions are left unmapped: every device is moved onto a paging HWPT of the IOAS that
//         routes I/O page faults to one fault queue, and the owner's event loop calls
//         on_fault_readable(), which maps a premap window per fault (FaultEngine + FaultQueue)
//         and answers it.
// Built from a plain DmaPolicy. The VM's default domain maps guest RAM at IOVA = GPA (the
// builder says so in the policy); a guest virtio-iommu domain will be one DmaDomain each.
// Before a fault region is trusted, create() checks that it can fault at all: the backend has
// FaultSupport (iommufd, not type1), every device can send page requests (PCIe PRI; AMD-Vi
// accepts the attach of a PRI-less device and then never faults), the kernel allocates the
// fault queue and HWPTs, and each attach succeeds. If a check fails, DmaPolicy::fallback_pin
// pins the fault regions instead, else create() fails with the reason.
// A region can switch between pin and fault at run time (set_dma_mode: the control API).
// Accounting: one PinAccounting (static + fault bytes, per region, pin limit, optional reclaim
// of cold windows); summary() is the timeline's "dma" section, with per-region MAP/UNMAP
// calls and their time.
// Teardown (destructor), in this order: fault windows unmapped, devices moved off the fault
// HWPTs (DmaDevice::detach), HWPTs and the fault queue destroyed, pins unmapped.
// Owns its mappings, HWPTs and fault queue; borrows Sys and the backend, which must outlive
// it. Thread-compatible: the owner serialises calls (pinless: the builder, then the main
// thread's event loop, never a vCPU thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pinless/base/result.h"
#include "pinless/base/sys.h"
#include "pinless/iommu/dma_backend.h"
#include "pinless/iommu/dma_policy.h"

namespace pinless::iommu {

// A device that does DMA through the domain, as the domain sees it.
struct DmaDevice {
  std::string name;
  uint32_t dev_id = 0;  // iommufd device id (0 on type1)
  // Whether the device can send page requests; if not, why (shown to the user).
  bool can_fault = false;
  std::string why_not;
  // Moves the device onto a HWPT (iommufd). Required for fault regions.
  std::function<Status(uint32_t pt_id)> attach;
  // Moves it off the domain's HWPTs, before they are destroyed (empty: its owner closes the
  // device before the domain is destroyed).
  std::function<void()> detach;
};

// A step of create() for the owner's startup timeline: dma_fault_setup, pin_region (the attrs
// of docs/timeline.md).
struct DmaPhase {
  std::string name;
  std::vector<std::pair<std::string, std::string>> attrs;
  std::chrono::steady_clock::time_point start, end;
};

class DmaDomain {
 public:
  // `phases` (may be null) receives the steps taken, in the order they ended, also when
  // create() fails.
  [[nodiscard]] static Result<std::unique_ptr<DmaDomain>> create(Sys& sys, DmaBackend& backend,
                                                                 std::vector<DmaDevice> devices, DmaPolicy policy,
                                                                 std::vector<DmaPhase>* phases = nullptr);
  ~DmaDomain();
  DmaDomain(const DmaDomain&) = delete;
  DmaDomain& operator=(const DmaDomain&) = delete;

  // Moves every device off the domain's HWPTs (DmaDevice::detach). The owner calls it before
  // closing its devices; idempotent (the destructor calls it too).
  void release_devices();
  // The fault fd for the owner's event loop (level-triggered readiness), or -1 without fault
  // regions.
  int fault_fd() const;
  // Serves what is queued (never blocks). True: it stopped at its read budget and the queue
  // may hold more (call again after other work). An error means the fault fd itself failed.
  [[nodiscard]] Result<bool> on_fault_readable();
  // Changes the fault region that starts at RAM offset `ram_offset` (DmaRegion::offset): its
  // premap window size and/or placement, for faults from now on (windows mapped already
  // stay; the summary shows the new policy). EINVAL for a pinned region, no region there or a
  // bad value.
  [[nodiscard]] Status set_fault_policy(uint64_t ram_offset, std::optional<uint64_t> premap_pages,
                                        std::optional<WindowPolicy> window);
  // Switches that region between the pin and fault policies at run time (premap and window:
  // the fault policy, given only with fault = true; unset: as before, else the defaults).
  //   pin -> fault: if the domain has no fault setup yet, it is made now (fault queue, one
  //     fault HWPT per device, each device moved onto it by replace; a device or backend that
  //     cannot fault refuses with the reason (EOPNOTSUPP) and nothing changes; fault_fd()
  //     turns valid: the owner starts watching it). The engine takes the region, then its
  //     static pin is unmapped.
  //   fault -> pin: refused with ENOSPC if pinning it whole would pass the pin limit; else its
  //     fault windows are unmapped and the whole region mapped and pinned (if that fails it
  //     stays a fault region with nothing mapped). Faults there are answered SUCCESS after.
  // Devices stay on the fault HWPTs once they are there. Takes as long as the pinning.
  [[nodiscard]] Status set_dma_mode(uint64_t ram_offset, bool fault, std::optional<uint64_t> premap_pages,
                                    std::optional<WindowPolicy> window);
  // Bytes pinned now (static + fault windows).
  uint64_t pinned_bytes() const;
  // The "dma" section of the timeline (docs/timeline.md).
  nlohmann::ordered_json summary() const;

 private:
  struct Impl;
  explicit DmaDomain(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pinless::iommu
