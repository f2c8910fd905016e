#include <doctest/doctest.h>
#include <linux/vfio.h>

#include "fake_vfio.h"
#include "pinless/base/linux_kvm.h"
#include "pinless/iommu/iommufd_backend.h"
#include "pinless/iommu/type1_backend.h"
#include "pinless/vfio/vfio_device.h"
#include "unit/iommu/fake_iommu.h"

using namespace pinless;
using namespace pinless::testing;
using namespace pinless::vfio;

TEST_CASE("vfio device: cdev open binds, attaches to the IOAS, reads regions and resets") {
  FakeSys sys;
  FakeIommufd iommufd(sys);
  FakeVfioPci pci(sys);
  pci.regions[2] = {0x10000, VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_READ, {{0, 0x2000}, {0x4000, 0xc000}}};
  {
    auto ctx = iommu::Iommufd::open(sys).value();
    auto ioas = iommu::IommufdBackend::create(*ctx).value();
    {
      auto dev = VfioDevice::open_cdev(sys, "/dev/vfio/devices/vfio0", *ioas, "0000:00:03.0");
      REQUIRE(dev);
      CHECK(pci.binds == 1);
      CHECK(pci.attached_pt == ioas->ioas_id());
      CHECK((*dev)->devid() == 7);
      CHECK(pci.resets == 1);  // reset before use
      const RegionInfo* r2 = (*dev)->region(2);
      REQUIRE(r2 != nullptr);
      CHECK(r2->sparse);  // needed a second GET_REGION_INFO with the bigger argsz
      CHECK(r2->areas.size() == 2);
      CHECK((*dev)->irq(kMsiIrq)->count == 1);
      CHECK((*dev)->config_read(0, 2).value() == 0x1234);
      CHECK((*dev)->kvm_file_fd() == (*dev)->fd());

      int fds[2] = {11, -1};
      REQUIRE((*dev)->set_irq_eventfds(kMsixIrq, 3, fds));
      REQUIRE(pci.irq_sets.size() == 1);
      CHECK(pci.irq_sets[0].index == kMsixIrq);
      CHECK(pci.irq_sets[0].start == 3);
      CHECK(pci.irq_sets[0].fds == std::vector<int32_t>{11, -1});
      CHECK((pci.irq_sets[0].flags & VFIO_IRQ_SET_DATA_EVENTFD) != 0);

      // Out-of-range region accesses are refused without a syscall.
      uint8_t b[4];
      CHECK_FALSE((*dev)->region_read(kConfigRegion, 254, b));
      CHECK_FALSE((*dev)->map_region(kConfigRegion, 0, 4096));  // not mmappable
    }
    CHECK(pci.resets == 2);  // and at teardown
  }
  CHECK(sys.open_fds() == 0);
}

TEST_CASE("vfio device: busy and failing binds are reported and close the fd") {
  FakeSys sys;
  FakeIommufd iommufd(sys);
  FakeVfioPci pci(sys);
  auto ctx = iommu::Iommufd::open(sys).value();
  auto ioas = iommu::IommufdBackend::create(*ctx).value();
  size_t before = sys.open_fds();

  pci.open_err = EBUSY;
  auto busy = VfioDevice::open_cdev(sys, "/dev/vfio/devices/vfio0", *ioas, "0000:00:03.0");
  REQUIRE_FALSE(busy);
  CHECK(busy.error().err() == EBUSY);
  CHECK(busy.error().message().find("in use") != std::string::npos);

  pci.open_err = 0;
  pci.bind_err = EINVAL;
  auto bad = VfioDevice::open_cdev(sys, "/dev/vfio/devices/vfio0", *ioas, "0000:00:03.0");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().op() == "VFIO_DEVICE_BIND_IOMMUFD");
  CHECK(sys.open_fds() == before);
}

TEST_CASE("vfio device: a device without reset support is not reset") {
  FakeSys sys;
  FakeIommufd iommufd(sys);
  FakeVfioPci pci(sys);
  pci.can_reset = false;
  auto ctx = iommu::Iommufd::open(sys).value();
  auto ioas = iommu::IommufdBackend::create(*ctx).value();
  {
    auto dev = VfioDevice::open_cdev(sys, "/dev/vfio/devices/vfio0", *ioas, "0000:00:03.0");
    REQUIRE(dev);
    CHECK_FALSE((*dev)->can_reset());
  }
  CHECK(pci.resets == 0);
}

TEST_CASE("vfio device: group path gets the device fd from the container's group") {
  FakeSys sys;
  FakeVfioPci pci(sys);
  sys.on_open("/dev/vfio/vfio");
  sys.on_open("/dev/vfio/5");
  sys.on_ioctl(VFIO_GET_API_VERSION, [](int, unsigned long, void*) { return VFIO_API_VERSION; });
  sys.on_ioctl(VFIO_CHECK_EXTENSION, [](int, unsigned long, void*) { return 1; });
  sys.on_ioctl(VFIO_GROUP_GET_STATUS, [](int, unsigned long, void* a) {
    static_cast<vfio_group_status*>(a)->flags = VFIO_GROUP_FLAGS_VIABLE;
    return 0;
  });
  sys.on_ioctl(VFIO_GROUP_SET_CONTAINER, [](int, unsigned long, void*) { return 0; });
  sys.on_ioctl(VFIO_SET_IOMMU, [](int, unsigned long, void*) { return 0; });
  std::string asked;
  int group_fd = -1;
  sys.on_ioctl(VFIO_GROUP_GET_DEVICE_FD, [&](int fd, unsigned long, void* a) {
    asked = static_cast<const char*>(a);
    group_fd = fd;
    return pci.fd = sys.new_fd();
  });
  {
    auto container = iommu::Type1Backend::open(sys, [](int) { return std::vector<std::string>{}; }).value();
    {
      auto dev = VfioDevice::open_group(sys, *container, 5, "0000:00:03.0");
      REQUIRE(dev);
      CHECK(asked == "0000:00:03.0");
      CHECK((*dev)->kvm_file_fd() == group_fd);
      CHECK(pci.resets == 1);
    }
    CHECK(pci.resets == 2);
  }
  CHECK(sys.open_fds() == 0);
}

TEST_CASE("kvm vfio device: created once, files added with FILE_ADD, fd closed") {
  FakeSys sys;
  int created = 0;
  std::vector<int32_t> added;
  sys.on_ioctl(KVM_CREATE_DEVICE, [&](int, unsigned long, void* a) {
    auto* cd = static_cast<kvm_create_device*>(a);
    CHECK(cd->type == KVM_DEV_TYPE_VFIO);
    cd->fd = uint32_t(sys.new_fd());
    return ++created, 0;
  });
  sys.on_ioctl(KVM_SET_DEVICE_ATTR, [&](int, unsigned long, void* a) {
    auto* at = static_cast<kvm_device_attr*>(a);
    CHECK(at->group == 1);
    added.push_back(*reinterpret_cast<int32_t*>(at->addr));
    return 0;
  });
  {
    auto kv = KvmVfio::create(sys, 3);
    REQUIRE(kv);
    REQUIRE(kv->add_file(42));
  }
  CHECK(created == 1);
  CHECK(added == std::vector<int32_t>{42});
  CHECK(sys.open_fds() == 0);
}
