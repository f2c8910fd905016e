// The scripted world of the VfioPciDevice tests: a fake VFIO PCI device and iommufd over
// FakeSys, with vmm's Vm, IoBus and MsiRouter behind the pci/platform.h interfaces, as in
// pinless. Rig records memslots, irqfds and GSI routes as KVM would hold them.
#pragma once

#include <linux/vfio.h>

#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "fake_vfio.h"
#include "fakes/fake_kvm.h"
#include "pinless/base/linux_kvm.h"
#include "pinless/vfio/vfio_pci_device.h"
#include "pinless/vmm/io_bus.h"
#include "pinless/vmm/kvm/kvm.h"
#include "pinless/vmm/kvm/msi_router.h"
#include "pinless/vmm/kvm/vm.h"
#include "unit/iommu/fake_iommu.h"

namespace pinless::testing::vfio_pci {

using vmm::IoBus;
using vmm::Kvm;
using vmm::Vm;
using vfio::VfioPciDevice;

struct Rig {
  FakeSys sys;
  FakeIommufd iommufd{sys};
  FakeVfioPci pci{sys};
  std::map<uint32_t, kvm_userspace_memory_region> slots;  // live memslots
  std::vector<uint32_t> removed_slots;                     // every slot deleted, in order
  uint64_t refuse_slot_at = ~0ull;  // a memslot at this GPA gets EEXIST (as over guest RAM)
  std::vector<kvm_irqfd> irqfds;
  int routing_pushes = 0;
  std::vector<kvm_irq_routing_entry> last_routes;

  Rig() {
    script_kvm_vm(sys);
    sys.on_ioctl(KVM_SET_USER_MEMORY_REGION, [this](int, unsigned long, void* a) {
      auto* mr = static_cast<kvm_userspace_memory_region*>(a);
      if (mr->memory_size == 0) {
        removed_slots.push_back(mr->slot);
        slots.erase(mr->slot);
      } else if (mr->guest_phys_addr == refuse_slot_at) {
        return -EEXIST;
      } else {
        slots[mr->slot] = *mr;
      }
      return 0;
    });
    sys.on_ioctl(KVM_IRQFD, [this](int, unsigned long, void* a) {
      irqfds.push_back(*static_cast<kvm_irqfd*>(a));
      return 0;
    });
    sys.on_ioctl(KVM_SET_GSI_ROUTING, [this](int, unsigned long, void* a) {
      auto* r = static_cast<kvm_irq_routing*>(a);
      last_routes.assign(r->entries, r->entries + r->nr);
      return ++routing_pushes, 0;
    });
  }

  std::optional<kvm_irq_routing_entry> route(uint32_t gsi) const {
    for (const auto& e : last_routes) {
      if (e.gsi == gsi) return e;
    }
    return std::nullopt;
  }
};

inline std::unique_ptr<vfio::VfioDevice> open_dev(Rig& rig, iommu::IommufdBackend& ioas) {
  return vfio::VfioDevice::open_cdev(rig.sys, "/dev/vfio/devices/vfio0", ioas, "0000:00:03.0").value();
}

// The device on `rig` with what BAR placement needs around it: the IOMMU context, a VM for
// the memslots and a bus for the traps. Members in dependency order.
struct PlacedDevice {
  std::unique_ptr<iommu::Iommufd> ctx;
  std::unique_ptr<iommu::IommufdBackend> ioas;
  Kvm kvm;
  Vm vm;
  IoBus bus;
  std::shared_ptr<VfioPciDevice> dev;
  explicit PlacedDevice(Rig& rig)
      : ctx(iommu::Iommufd::open(rig.sys).value()),
        ioas(iommu::IommufdBackend::create(*ctx).value()),
        kvm(Kvm::open(rig.sys).value()),
        vm(Vm::create(kvm).value()),
        dev(VfioPciDevice::create(rig.sys, open_dev(rig, *ioas), {&vm, &bus, nullptr, 32}).value()) {}
};

}  // namespace pinless::testing::vfio_pci
