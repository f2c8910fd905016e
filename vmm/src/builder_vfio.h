// VFIO passthrough for the builder: everything `--device vfio,...` needs, in the order it
// must happen before the first vCPU runs:
//   1. locate each device (sysfs), pick ONE DMA backend for the VM (iommufd IOAS or a type1
//      container, --iommu-backend / --iommufd-fd),
//   2. open each device on it (cdev bind+attach, or group), reset it    (phase vfio_reset),
//   3. the VM's DMA domain: guest RAM at IOVA = GPA, pinned or fault-driven per --ram-region
//      (iommu::DmaDomain; phases dma_fault_setup, pin_region),
//   4. virtualise config space, mmap BARs, assign BAR addresses, eventfds + GSIs per vector,
//      register with the KVM VFIO device                                (phase vfio_bars),
//   5. attach() puts the devices on the guest's PCI bus.
// Owns the backend, the DMA domain and devices; teardown (destructor) runs in reverse:
// devices released and reset first, then the domain's mappings undone (one
// "dma: released all mappings" log line with what stays pinned), then the IOAS/container closed.
// Borrows Vm, GuestMemory, IoBus, the VM's MsiRouter and its BAR allocator (all declared
// before it in the builder, so they outlive it). Main thread only.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pinless/base/result.h"
#include "pinless/base/sys.h"
#include "pinless/vmm/cli/config.h"
#include "pinless/vmm/io_bus.h"
#include "pinless/vmm/kvm/vm.h"
#include "pinless/vmm/memory/guest_memory.h"
#include "pinless/iommu/dma_policy.h"
#include "pinless/iommu/iommufd_backend.h"
#include "pinless/pci/bar_allocator.h"
#include "pinless/pci/pci_root.h"
#include "pinless/vmm/kvm/msi_router.h"
#include "pinless/vmm/timeline/timeline.h"

namespace pinless::vmm {

class VfioSetup {
 public:
  // Returns an empty setup (nothing opened) when the config has no VFIO devices.
  [[nodiscard]] static Result<std::unique_ptr<VfioSetup>> create(const VmConfig& config, Vm& vm,
                                                                 const GuestMemory& memory, IoBus& bus,
                                                                 MsiRouter& router, pci::PciBarAllocator& bars,
                                                                 Timeline& timeline, Sys& sys);
  ~VfioSetup();
  VfioSetup(const VfioSetup&) = delete;
  VfioSetup& operator=(const VfioSetup&) = delete;

  // Plugs every device into bus 0 of `root` (lowest free slots).
  [[nodiscard]] Status attach(pci::PciRoot& root);

  // For the virtio-iommu (iommufd only; null / 0 on type1 or without devices): the iommufd,
  // and the VM's IOAS, guest RAM at IOVA = GPA, which the devices are attached to.
  iommu::Iommufd* iommufd() const;
  uint32_t ioas_id() const;
  // The IOVA ranges the VM's IOAS can map, given every attached device's reserved regions.
  [[nodiscard]] Result<std::vector<Range<Iova>>> iova_ranges();
  // After attach(): each device's place on bus 0, and how to move it to another IOAS/HWPT.
  struct Placed {
    uint8_t devfn = 0;
    std::string name;
    std::function<Status(uint32_t pt_id)> attach_pt;
  };
  std::vector<Placed> placed() const;
  // The I/O page fault queue for the main thread's event loop (-1: none), and its handler:
  // true when it stopped at its read budget with work left (run it again; see EventLoop).
  int fault_fd() const;
  [[nodiscard]] Result<bool> on_fault_readable();
  // After the vCPUs stopped: the DMA summary into the timeline ("dma") and the log.
  void finish(Timeline& timeline);
  // While the VM runs (event-loop thread, where faults are served): the DMA summary as
  // finish() writes it (null without a DMA domain), and each device: guest BDF, host name,
  // backend, IOMMU domain ("vm" = guest RAM at IOVA = GPA).
  nlohmann::ordered_json dma_summary() const;
  // The control API's vm.ram-region (event-loop thread): see DmaDomain::set_fault_policy and
  // set_dma_mode (dma: switch to pin or fault; unset: premap/window of a fault region). After
  // a switch to fault, fault_fd() may have become valid: the caller starts watching it.
  [[nodiscard]] Status set_ram_region(uint64_t ram_offset, std::optional<bool> fault,
                                      std::optional<uint64_t> premap_pages, std::optional<iommu::WindowPolicy> window);
  nlohmann::ordered_json devices_json() const;

 private:
  struct Impl;
  explicit VfioSetup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pinless::vmm
