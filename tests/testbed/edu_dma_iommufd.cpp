// edu_dma_iommufd: the same edu round trip as edu_dma_type1, through iommufd and
// the VFIO device cdev: /dev/iommu + /dev/vfio/devices/vfioN, BIND_IOMMUFD,
// IOAS_ALLOC, ATTACH_IOMMUFD_PT (auto HWPT), IOVA_RANGES, IOAS_MAP with
// FIXED_IOVA, DMA both ways with verify, MSI to an eventfd, IOAS_UNMAP; checks
// that the pin shows in VmPin (iommufd charges mm->pinned_vm) and goes away.
// Exit 77 when the kernel has no iommufd (/dev/iommu absent, e.g. stock Debian).
#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "edu_vfio.h"
#include "pinless/iommu/uapi/iommufd.h"

using namespace pinless::testbed;

namespace {

constexpr uint64_t kIova = 0x100000;  // below edu's 28-bit DMA mask
constexpr uint64_t kSize = 1ull << 20;
constexpr unsigned kMsis = 16;

std::string cdev_of(const std::string& bdf) {
  std::string dir = "/sys/bus/pci/devices/" + bdf + "/vfio-dev";
  DIR* d = opendir(dir.c_str());
  if (!d) {
    if (!exists("/sys/bus/pci/devices/" + bdf)) fail("no PCI device %s", bdf.c_str());
    fail("%s has no %s: not bound to vfio-pci, or kernel without CONFIG_VFIO_DEVICE_CDEV", bdf.c_str(),
         dir.c_str());
  }
  std::string name;
  while (dirent* e = readdir(d))
    if (std::strncmp(e->d_name, "vfio", 4) == 0) name = e->d_name;
  closedir(d);
  if (name.empty()) fail("%s is empty", dir.c_str());
  return "/dev/vfio/devices/" + name;
}

}  // namespace

int main(int argc, char** argv) {
  g_prog = "edu_dma_iommufd";
  if (!exists("/dev/iommu")) skip("no /dev/iommu: kernel without CONFIG_IOMMUFD (stock Debian kernels)");
  std::string bdf = edu_bdf(argc, argv);
  std::string cdev = cdev_of(bdf);

  uint64_t t0 = now_us();
  Fd iommufd(::open("/dev/iommu", O_RDWR | O_CLOEXEC));
  if (!iommufd.valid()) fail("open /dev/iommu: %s", err());
  Fd device(::open(cdev.c_str(), O_RDWR | O_CLOEXEC));
  if (!device.valid()) fail("open %s: %s", cdev.c_str(), err());

  vfio_device_bind_iommufd bind{};
  bind.argsz = sizeof bind;
  bind.iommufd = iommufd.get();
  if (ioctl(device.get(), VFIO_DEVICE_BIND_IOMMUFD, &bind) < 0) fail("VFIO_DEVICE_BIND_IOMMUFD: %s", err());
  iommu_ioas_alloc ioas{};
  ioas.size = sizeof ioas;
  if (ioctl(iommufd.get(), IOMMU_IOAS_ALLOC, &ioas) < 0) fail("IOMMU_IOAS_ALLOC: %s", err());
  vfio_device_attach_iommufd_pt attach{};
  attach.argsz = sizeof attach;
  attach.pt_id = ioas.out_ioas_id;
  if (ioctl(device.get(), VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach) < 0)
    fail("VFIO_DEVICE_ATTACH_IOMMUFD_PT(ioas %u): %s", ioas.out_ioas_id, err());
  uint64_t t_setup = now_us();

  iommu_iova_range ranges[8]{};
  iommu_ioas_iova_ranges rq{};
  rq.size = sizeof rq;
  rq.ioas_id = ioas.out_ioas_id;
  rq.num_iovas = 8;
  rq.allowed_iovas = reinterpret_cast<uint64_t>(ranges);
  if (ioctl(iommufd.get(), IOMMU_IOAS_IOVA_RANGES, &rq) < 0) fail("IOMMU_IOAS_IOVA_RANGES: %s", err());
  bool usable = false;
  std::string range_text;
  for (unsigned i = 0; i < std::min(rq.num_iovas, 8u); i++) {
    char b[64];
    std::snprintf(b, sizeof b, "%s0x%llx-0x%llx", i ? "," : "", static_cast<unsigned long long>(ranges[i].start),
                  static_cast<unsigned long long>(ranges[i].last));
    range_text += b;
    if (ranges[i].start <= kIova && kIova + kSize - 1 <= ranges[i].last) usable = true;
  }
  if (!usable) fail("IOVA 0x%llx+1MiB not in the usable ranges %s", static_cast<unsigned long long>(kIova), range_text.c_str());

  auto* buf = static_cast<uint8_t*>(
      mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (buf == MAP_FAILED) fail("mmap: %s", err());
  long pin0 = proc_status_kb("VmPin");
  iommu_ioas_map map{};
  map.size = sizeof map;
  map.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
  map.ioas_id = ioas.out_ioas_id;
  map.user_va = reinterpret_cast<uint64_t>(buf);
  map.length = kSize;
  map.iova = kIova;
  uint64_t tm = now_us();
  if (ioctl(iommufd.get(), IOMMU_IOAS_MAP, &map) < 0)
    fail("IOMMU_IOAS_MAP(FIXED_IOVA 0x%llx, 1 MiB): %s", static_cast<unsigned long long>(kIova), err());
  uint64_t map_us = now_us() - tm;
  if (map.iova != kIova) fail("IOAS_MAP returned iova 0x%llx, want 0x%llx", static_cast<unsigned long long>(map.iova), static_cast<unsigned long long>(kIova));
  long pin1 = proc_status_kb("VmPin");
  if (pin1 - pin0 != long(kSize / 1024))
    fail("VmPin %ld kB -> %ld kB after IOAS_MAP of %llu kB (pages not pinned at map time?)", pin0, pin1,
         static_cast<unsigned long long>(kSize / 1024));

  {
    EduVfio edu(device.get(), bdf);
    edu.open_bar0();
    edu.enable_bus_master();
    edu.enable_msi();
    EduDmaResult d = edu.dma_round_trip(buf, kIova, buf + 4096, kIova + 4096, edu::kMaxDma);
    EduMsiResult m = edu.raise_msis(kMsis);
    edu.disable_msi();
    info("%s (%s, dev_id %u, ioas %u, hwpt %u, ranges %s): map 1024 KiB %llu us (VmPin +%ld kB); "
         "DMA %u B ram->dev %llu us, dev->ram %llu us, verified; MSI: %llu for 2 DMA completions, "
         "%llu for %u raised (first %llu us, avg %llu us, max %llu us)",
         bdf.c_str(), cdev.c_str(), bind.out_devid, ioas.out_ioas_id, attach.pt_id, range_text.c_str(),
         static_cast<unsigned long long>(map_us), pin1 - pin0, d.bytes,
         static_cast<unsigned long long>(d.to_dev_us), static_cast<unsigned long long>(d.to_ram_us),
         static_cast<unsigned long long>(d.msi_events), static_cast<unsigned long long>(m.received), m.raised,
         static_cast<unsigned long long>(m.first_us), static_cast<unsigned long long>(m.avg_us),
         static_cast<unsigned long long>(m.max_us));
  }

  iommu_ioas_unmap unmap{};
  unmap.size = sizeof unmap;
  unmap.ioas_id = ioas.out_ioas_id;
  unmap.iova = kIova;
  unmap.length = kSize;
  tm = now_us();
  if (ioctl(iommufd.get(), IOMMU_IOAS_UNMAP, &unmap) < 0) fail("IOMMU_IOAS_UNMAP: %s", err());
  uint64_t unmap_us = now_us() - tm;
  if (unmap.length != kSize)
    fail("IOAS_UNMAP unmapped 0x%llx bytes, want 0x%llx", static_cast<unsigned long long>(unmap.length),
         static_cast<unsigned long long>(kSize));
  long pin2 = proc_status_kb("VmPin");
  if (pin2 != pin0) fail("VmPin %ld kB after IOAS_UNMAP, baseline %ld kB", pin2, pin0);

  vfio_device_detach_iommufd_pt detach{};
  detach.argsz = sizeof detach;
  if (ioctl(device.get(), VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach) < 0)
    fail("VFIO_DEVICE_DETACH_IOMMUFD_PT: %s", err());
  iommu_destroy destroy{};
  destroy.size = sizeof destroy;
  destroy.id = ioas.out_ioas_id;
  if (ioctl(iommufd.get(), IOMMU_DESTROY, &destroy) < 0) fail("IOMMU_DESTROY(ioas %u): %s", ioas.out_ioas_id, err());
  munmap(buf, kSize);
  info("ok: bind+ioas+attach %llu us, unmap %llu us, VmPin back to %ld kB, detach+destroy ok, total %llu us",
       static_cast<unsigned long long>(t_setup - t0), static_cast<unsigned long long>(unmap_us), pin2,
       static_cast<unsigned long long>(now_us() - t0));
  return 0;
}
