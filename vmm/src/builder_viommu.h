// The virtio-iommu for the builder (--viommu; docs/viommu.md). In build order:
//   create()         the host side (iommu::NestedDomains: guest RAM once in a source IOAS,
//                    one IOAS per guest domain), the model with every bus-0 function as an
//                    endpoint, the virtio-pci function at 00:01.0 with its BAR assigned and its
//                    VirtioSlot, all before the VFIO devices take the next slots;
//   add_endpoints()  after VfioSetup::attach(): each assigned device becomes the endpoint its
//                    BDF names (the VIOT's rule), moved between IOASes by replace-attach;
//   start()          notifications served on the event loop;
//   finish()         the "viommu" timeline section (requests by type, statuses, domains).
// viot() is the matching ACPI VIOT: the function at 00:01.0 translates every function on bus 0.
// Teardown (destructor), before the VFIO devices and the IOAS they started on are released:
// the function leaves the PCI root, the device is reset (every endpoint back on the VM's
// IOAS, every guest domain destroyed), then the domain IOASes and the source IOAS go.
// Owns the device and the host side; borrows the Vm, IoBus, MsiRouter, PciRoot and the
// iommufd (all outlive it). Main thread only (the device runs on vCPU threads and the loop).
#pragma once

#include <memory>

#include <nlohmann/json.hpp>

#include "pinless/base/result.h"
#include "pinless/base/sys.h"
#include "pinless/pci/bar_allocator.h"
#include "pinless/pci/pci_root.h"
#include "pinless/vmm/acpi/viot.h"
#include "pinless/vmm/event_loop.h"
#include "pinless/vmm/io_bus.h"
#include "pinless/vmm/kvm/msi_router.h"
#include "pinless/vmm/kvm/vm.h"
#include "pinless/vmm/memory/guest_memory.h"
#include "pinless/vmm/timeline/timeline.h"
#include "builder_vfio.h"

namespace pinless::vmm {

class ViommuSetup {
 public:
  static constexpr uint8_t kSlot = 1;  // 00:01.0
  static constexpr uint16_t kBdf = kSlot << 3;

  // Every function of bus 0 behind the virtio-iommu at kBdf, endpoint ID = BDF.
  static acpi::ViotConfig viot();

  struct Env {
    Sys* sys;
    Vm* vm;
    IoBus* bus;
    const GuestMemory* memory;
    MsiRouter* router;
    pci::PciBarAllocator* bars;
    pci::PciRoot* root;
  };
  // `vfio` supplies the iommufd and the VM's IOAS when it has devices; without any, the
  // virtio-iommu opens /dev/iommu itself (its endpoints then do no DMA of their own).
  [[nodiscard]] static Result<std::unique_ptr<ViommuSetup>> create(const Env& env, VfioSetup& vfio,
                                                                   Timeline& timeline);
  ~ViommuSetup();
  ViommuSetup(const ViommuSetup&) = delete;
  ViommuSetup& operator=(const ViommuSetup&) = delete;

  [[nodiscard]] Status add_endpoints(VfioSetup& vfio);
  [[nodiscard]] Status start(EventLoop& loop);
  void finish(Timeline& timeline);
  // The "viommu" section as finish() writes it, at any time (any thread).
  nlohmann::ordered_json summary() const;

 private:
  struct Impl;
  explicit ViommuSetup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pinless::vmm
