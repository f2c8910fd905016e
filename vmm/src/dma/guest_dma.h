// GuestDma: how guest RAM is reachable by the VM's DMA devices, per region (docs/dma.md).
//   dma=pin   regions are mapped at IOVA = GPA and pinned before the first vCPU runs
//             (PinnedRegion: parallel population, as few MAP calls as the IOVA holes allow);
//   dma=fault regions are left unmapped: every device is moved onto a paging HWPT of the VM's
//             IOAS that routes I/O page faults to one iommufd fault queue, and the event loop
//             maps a premap window per fault (FaultEngine + FaultQueue) and answers it.
// Before a fault region is trusted, pinless checks that it can fault at all: iommufd (not
// type1), a kernel with paging-HWPT IOPF, devices that can send page requests (PCIe PRI;
// AMD-Vi accepts the attach of a PRI-less device and then never faults), and the attach
// itself. If any check fails, --dma-fallback=pin pins the region, =fail stops with the reason.
// Accounting: one PinAccounting for the VM (static + fault bytes, per region, --pin-limit,
// optional reclaim of cold windows); summary() is the timeline's "dma" section.
// Teardown (destructor), in this order: fault windows unmapped, devices moved off the fault
// HWPTs (mock devices back to their home IOAS; VFIO devices are closed by their owner first),
// HWPTs and the fault queue destroyed, pins unmapped; then one "dma: released" log line with
// what is still pinned (0 B) and the process's VmPin/VmLck.
// Borrows the backend (and the IOAS, for iommufd), which must outlive it. Main thread only;
// on_fault_readable() runs on the main thread's event loop.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "pinless/base/result.h"
#include "pinless/base/sys.h"
#include "pinless/iommu/dma_backend.h"
#include "pinless/iommu/iommufd_backend.h"
#include "pinless/vmm/cli/dma_config.h"
#include "pinless/vmm/timeline/timeline.h"
#include "dma_pieces.h"

namespace pinless::vmm {

// A device that does DMA into guest RAM, as the DMA layer sees it.
struct DmaDeviceRef {
  std::string name;
  uint32_t dev_id = 0;  // iommufd device id (0 on type1)
  // Whether the device can send page requests; if not, why (shown to the user).
  bool can_fault = false;
  std::string why_not;
  // Moves the device onto a HWPT (iommufd). Required for fault mode.
  std::function<Status(uint32_t pt_id)> attach;
  // Moves it off our HWPTs at teardown, before they are destroyed (empty: its owner closes
  // the device before GuestDma is destroyed).
  std::function<void()> detach;
};

class GuestDma {
 public:
  // `ioas` is the backend when it is iommufd, else null.
  [[nodiscard]] static Result<std::unique_ptr<GuestDma>> create(Sys& sys, iommu::DmaBackend& backend,
                                                                iommu::IommufdBackend* ioas,
                                                                std::vector<DmaDeviceRef> devices,
                                                                std::vector<DmaPiece> pieces, const DmaConfig& cfg,
                                                                Timeline& timeline);
  ~GuestDma();
  GuestDma(const GuestDma&) = delete;
  GuestDma& operator=(const GuestDma&) = delete;

  // Moves every device off our HWPTs (VFIO devices back onto the IOAS, mock devices home).
  // The owner calls it before closing its devices; idempotent (the destructor calls it too).
  void release_devices();
  // The fault fd the event loop watches, or -1 without fault regions.
  int fault_fd() const;
  // Serves what is queued (never blocks); true when it stopped at its read budget with work
  // possibly left (call again). An error means the fault fd itself failed.
  Result<bool> on_fault_readable();
  uint64_t pinned_bytes() const;
  // The "dma" section of the timeline (docs/timeline.md).
  nlohmann::ordered_json summary() const;

 private:
  struct Impl;
  explicit GuestDma(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pinless::vmm
