// edu_dma_type1: VFIO type1 end to end on the first edu device of the testbed
// ($PINLESS_EDU_BDFS, or a BDF argument): container + group, TYPE1v2,
// MAP_DMA of a 1 MiB buffer at IOVA 0x100000, device fd, BAR0, bus master,
// DMA RAM -> device -> RAM with verify, MSI through an eventfd (two DMA
// completions plus raised interrupts), UNMAP_DMA, and VmLck back to baseline.
#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "edu_vfio.h"

using namespace pinless::testbed;

namespace {

constexpr uint64_t kIova = 0x100000;    // below edu's 28-bit DMA mask
constexpr uint64_t kSize = 1ull << 20;  // 1 MiB: visible in VmLck
constexpr unsigned kMsis = 16;

std::string iommu_group_of(const std::string& bdf) {
  std::string link = "/sys/bus/pci/devices/" + bdf + "/iommu_group";
  char buf[256];
  ssize_t n = readlink(link.c_str(), buf, sizeof buf - 1);
  if (n < 0) {
    if (!exists("/sys/bus/pci/devices/" + bdf))
      fail("no PCI device %s", bdf.c_str());
    fail("%s has no IOMMU group (%s: %s): no IOMMU enabled?", bdf.c_str(), link.c_str(), err());
  }
  buf[n] = 0;
  const char* slash = std::strrchr(buf, '/');
  return slash ? slash + 1 : buf;
}

}  // namespace

int main(int argc, char** argv) {
  g_prog = "edu_dma_type1";
  std::string bdf = edu_bdf(argc, argv);
  if (!exists("/dev/vfio/vfio"))
    fail("no /dev/vfio/vfio (VFIO not available here: run inside scripts/testbed)");
  char drv[256];
  ssize_t dn = readlink(("/sys/bus/pci/devices/" + bdf + "/driver").c_str(), drv, sizeof drv - 1);
  drv[dn > 0 ? dn : 0] = 0;
  if (!std::strstr(drv, "/vfio-pci"))
    fail("%s is bound to '%s', not vfio-pci (scripts/testbed --bind vfio)", bdf.c_str(),
         dn > 0 ? std::strrchr(drv, '/') + 1 : "no driver");
  std::string group_id = iommu_group_of(bdf);

  uint64_t t0 = now_us();
  Fd container(::open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC));
  if (!container.valid()) fail("open /dev/vfio/vfio: %s", err());
  if (ioctl(container.get(), VFIO_GET_API_VERSION) != VFIO_API_VERSION) fail("VFIO API version mismatch");
  if (ioctl(container.get(), VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0)
    fail("container lacks VFIO_TYPE1v2_IOMMU");

  std::string group_path = "/dev/vfio/" + group_id;
  Fd group(::open(group_path.c_str(), O_RDWR | O_CLOEXEC));
  if (!group.valid()) fail("open %s: %s", group_path.c_str(), err());
  vfio_group_status gs{};
  gs.argsz = sizeof gs;
  if (ioctl(group.get(), VFIO_GROUP_GET_STATUS, &gs) < 0) fail("VFIO_GROUP_GET_STATUS: %s", err());
  if (!(gs.flags & VFIO_GROUP_FLAGS_VIABLE))
    fail("group %s not viable (another device in it is not bound to vfio-pci)", group_id.c_str());
  int cfd = container.get();
  if (ioctl(group.get(), VFIO_GROUP_SET_CONTAINER, &cfd) < 0) fail("VFIO_GROUP_SET_CONTAINER: %s", err());
  if (ioctl(container.get(), VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0)
    fail("VFIO_SET_IOMMU(TYPE1v2): %s%s", err(),
         errno == EPERM ? " (no interrupt remapping: allow_unsafe_interrupts=1 needed)" : "");
  uint64_t t_setup = now_us();

  auto* buf = static_cast<uint8_t*>(
      mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (buf == MAP_FAILED) fail("mmap %llu bytes: %s", static_cast<unsigned long long>(kSize), err());
  long lck0 = proc_status_kb("VmLck");
  vfio_iommu_type1_dma_map map{};
  map.argsz = sizeof map;
  map.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
  map.vaddr = reinterpret_cast<uint64_t>(buf);
  map.iova = kIova;
  map.size = kSize;
  uint64_t tm = now_us();
  if (ioctl(container.get(), VFIO_IOMMU_MAP_DMA, &map) < 0)
    fail("VFIO_IOMMU_MAP_DMA iova 0x%llx size 0x%llx: %s", static_cast<unsigned long long>(kIova),
         static_cast<unsigned long long>(kSize), err());
  uint64_t map_us = now_us() - tm;
  long lck1 = proc_status_kb("VmLck");
  if (lck1 - lck0 != long(kSize / 1024))
    fail("VmLck %ld kB -> %ld kB after MAP_DMA of %llu kB (pinning not charged as expected)", lck0,
         lck1, static_cast<unsigned long long>(kSize / 1024));

  {
    Fd device(ioctl(group.get(), VFIO_GROUP_GET_DEVICE_FD, bdf.c_str()));
    if (!device.valid()) fail("VFIO_GROUP_GET_DEVICE_FD(%s): %s", bdf.c_str(), err());
    EduVfio edu(device.get(), bdf);
    edu.open_bar0();
    edu.enable_bus_master();
    edu.enable_msi();
    EduDmaResult d = edu.dma_round_trip(buf, kIova, buf + 4096, kIova + 4096, edu::kMaxDma);
    EduMsiResult m = edu.raise_msis(kMsis);
    edu.disable_msi();
    info("%s group %s: map %llu KiB %llu us (VmLck +%ld kB); DMA %u B ram->dev %llu us, dev->ram %llu us, "
         "verified; MSI: %llu for 2 DMA completions, %llu for %u raised (first %llu us, avg %llu us, "
         "max %llu us)",
         bdf.c_str(), group_id.c_str(), static_cast<unsigned long long>(kSize / 1024),
         static_cast<unsigned long long>(map_us), lck1 - lck0, d.bytes,
         static_cast<unsigned long long>(d.to_dev_us), static_cast<unsigned long long>(d.to_ram_us),
         static_cast<unsigned long long>(d.msi_events), static_cast<unsigned long long>(m.received),
         m.raised, static_cast<unsigned long long>(m.first_us), static_cast<unsigned long long>(m.avg_us),
         static_cast<unsigned long long>(m.max_us));
  }

  vfio_iommu_type1_dma_unmap unmap{};
  unmap.argsz = sizeof unmap;
  unmap.iova = kIova;
  unmap.size = kSize;
  tm = now_us();
  if (ioctl(container.get(), VFIO_IOMMU_UNMAP_DMA, &unmap) < 0) fail("VFIO_IOMMU_UNMAP_DMA: %s", err());
  uint64_t unmap_us = now_us() - tm;
  if (unmap.size != kSize)
    fail("UNMAP_DMA unmapped 0x%llx bytes, want 0x%llx", static_cast<unsigned long long>(unmap.size),
         static_cast<unsigned long long>(kSize));
  long lck2 = proc_status_kb("VmLck");
  if (lck2 != lck0) fail("VmLck %ld kB after UNMAP_DMA, baseline %ld kB", lck2, lck0);
  munmap(buf, kSize);
  info("ok: container+group+TYPE1v2 %llu us, unmap %llu us, VmLck back to %ld kB, total %llu us",
       static_cast<unsigned long long>(t_setup - t0), static_cast<unsigned long long>(unmap_us), lck2,
       static_cast<unsigned long long>(now_us() - t0));
  return 0;
}
