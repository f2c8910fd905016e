#include "edu_vfio.h"

#include <linux/vfio.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>

namespace pinless::testbed {

EduVfio::EduVfio(int device_fd, std::string bdf) : device_(device_fd), bdf_(std::move(bdf)) {}

EduVfio::~EduVfio() {
  if (bar_) munmap(const_cast<uint8_t*>(bar_), bar_map_size_);
}

uint32_t EduVfio::r32(uint32_t off) const { return *reinterpret_cast<volatile uint32_t*>(bar_ + off); }
void EduVfio::w32(uint32_t off, uint32_t v) { *reinterpret_cast<volatile uint32_t*>(bar_ + off) = v; }
void EduVfio::w64(uint32_t off, uint64_t v) { *reinterpret_cast<volatile uint64_t*>(bar_ + off) = v; }

void EduVfio::open_bar0() {
  vfio_device_info dinfo{};
  dinfo.argsz = sizeof dinfo;
  if (ioctl(device_, VFIO_DEVICE_GET_INFO, &dinfo) < 0) fail("%s: VFIO_DEVICE_GET_INFO: %s", bdf_.c_str(), err());
  if (!(dinfo.flags & VFIO_DEVICE_FLAGS_PCI)) fail("%s: not a PCI device (flags 0x%x)", bdf_.c_str(), dinfo.flags);

  vfio_region_info cfg{};
  cfg.argsz = sizeof cfg;
  cfg.index = VFIO_PCI_CONFIG_REGION_INDEX;
  if (ioctl(device_, VFIO_DEVICE_GET_REGION_INFO, &cfg) < 0)
    fail("%s: VFIO_DEVICE_GET_REGION_INFO(config): %s", bdf_.c_str(), err());
  config_offset_ = cfg.offset;

  vfio_region_info bar{};
  bar.argsz = sizeof bar;
  bar.index = VFIO_PCI_BAR0_REGION_INDEX;
  if (ioctl(device_, VFIO_DEVICE_GET_REGION_INFO, &bar) < 0)
    fail("%s: VFIO_DEVICE_GET_REGION_INFO(BAR0): %s", bdf_.c_str(), err());
  if (!(bar.flags & VFIO_REGION_INFO_FLAG_MMAP) || bar.size < 0x1000)
    fail("%s: BAR0 not mmappable (flags 0x%x, size 0x%llx)", bdf_.c_str(), bar.flags,
         static_cast<unsigned long long>(bar.size));
  bar_map_size_ = 0x1000;
  void* m = mmap(nullptr, bar_map_size_, PROT_READ | PROT_WRITE, MAP_SHARED, device_, off_t(bar.offset));
  if (m == MAP_FAILED) fail("%s: mmap BAR0: %s", bdf_.c_str(), err());
  bar_ = static_cast<volatile uint8_t*>(m);

  id_ = r32(edu::kId);
  if (id_ != edu::kIdValue) fail("%s: id register 0x%08x, want 0x%08x", bdf_.c_str(), id_, edu::kIdValue);
  w32(edu::kLiveness, 0x5a5aa5a5u);
  uint32_t live = r32(edu::kLiveness);
  if (live != ~0x5a5aa5a5u)
    fail("%s: liveness wrote 0x5a5aa5a5, read 0x%08x, want 0x%08x", bdf_.c_str(), live, ~0x5a5aa5a5u);
}

void EduVfio::enable_bus_master() {
  uint16_t cmd = 0;
  if (pread(device_, &cmd, 2, off_t(config_offset_ + 4)) != 2)
    fail("%s: read PCI_COMMAND: %s", bdf_.c_str(), err());
  cmd |= 0x2 | 0x4;  // memory space, bus master
  if (pwrite(device_, &cmd, 2, off_t(config_offset_ + 4)) != 2)
    fail("%s: write PCI_COMMAND: %s", bdf_.c_str(), err());
  uint16_t back = 0;
  if (pread(device_, &back, 2, off_t(config_offset_ + 4)) != 2 || !(back & 0x4))
    fail("%s: bus master did not stick (PCI_COMMAND 0x%04x)", bdf_.c_str(), back);
}

void EduVfio::enable_msi() {
  vfio_irq_info ii{};
  ii.argsz = sizeof ii;
  ii.index = VFIO_PCI_MSI_IRQ_INDEX;
  if (ioctl(device_, VFIO_DEVICE_GET_IRQ_INFO, &ii) < 0) fail("%s: VFIO_DEVICE_GET_IRQ_INFO(MSI): %s", bdf_.c_str(), err());
  if (ii.count < 1) fail("%s: device has no MSI vectors", bdf_.c_str());
  msi_count_ = ii.count;
  irq_ = Fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!irq_.valid()) fail("eventfd: %s", err());
  alignas(vfio_irq_set) uint8_t buf[sizeof(vfio_irq_set) + sizeof(int32_t)];
  auto* set = reinterpret_cast<vfio_irq_set*>(buf);
  set->argsz = sizeof buf;
  set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
  set->index = VFIO_PCI_MSI_IRQ_INDEX;
  set->start = 0;
  set->count = 1;
  int32_t fd = irq_.get();
  std::memcpy(set->data, &fd, sizeof fd);
  if (ioctl(device_, VFIO_DEVICE_SET_IRQS, set) < 0)
    fail("%s: VFIO_DEVICE_SET_IRQS(MSI -> eventfd): %s", bdf_.c_str(), err());
}

void EduVfio::disable_msi() {
  vfio_irq_set set{};
  set.argsz = sizeof set;
  set.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
  set.index = VFIO_PCI_MSI_IRQ_INDEX;
  set.start = 0;
  set.count = 0;
  if (ioctl(device_, VFIO_DEVICE_SET_IRQS, &set) < 0)
    fail("%s: VFIO_DEVICE_SET_IRQS(MSI off): %s", bdf_.c_str(), err());
  irq_.reset();
}

uint64_t EduVfio::wait_irq(int timeout_ms) {
  if (!irq_.valid()) return 0;
  pollfd p{irq_.get(), POLLIN, 0};
  int r = poll(&p, 1, timeout_ms);
  if (r < 0) fail("poll eventfd: %s", err());
  if (r == 0) return 0;
  uint64_t v = 0;
  if (read(irq_.get(), &v, sizeof v) != sizeof v) fail("read eventfd: %s", err());
  return v;
}

// Runs one DMA; returns the time it took in us. With an MSI eventfd, waits for
// the completion interrupt instead of polling the command register.
uint64_t EduVfio::dma(uint64_t src, uint64_t dst, uint32_t count, uint32_t cmd) {
  w64(edu::kDmaSrc, src);
  w64(edu::kDmaDst, dst);
  w64(edu::kDmaCount, count);
  uint64_t t0 = now_us();
  w32(edu::kDmaCmd, cmd | edu::kCmdStart);
  while (r32(edu::kDmaCmd) & edu::kCmdStart) {
    if (now_us() - t0 > 5'000'000)
      fail("%s: DMA %s of %u bytes (src 0x%llx dst 0x%llx) not done after 5 s", bdf_.c_str(),
           cmd & edu::kCmdToRam ? "device->RAM" : "RAM->device", count,
           static_cast<unsigned long long>(src), static_cast<unsigned long long>(dst));
    usleep(200);
  }
  return now_us() - t0;
}

EduDmaResult EduVfio::dma_round_trip(uint8_t* src, uint64_t src_iova, uint8_t* dst,
                                     uint64_t dst_iova, uint32_t bytes) {
  if (bytes == 0 || bytes > edu::kMaxDma) fail("DMA size %u outside 1..%u", bytes, edu::kMaxDma);
  if (src_iova + bytes - 1 > edu::kDmaMask || dst_iova + bytes - 1 > edu::kDmaMask)
    fail("IOVA above edu's 28-bit DMA mask");
  for (uint32_t i = 0; i < 4096; i++) {
    src[i] = uint8_t(i * 13 + 0x5b + (i >> 8));
    dst[i] = 0xee;
  }
  EduDmaResult r;
  r.bytes = bytes;
  uint32_t irq = irq_.valid() ? edu::kCmdIrq : 0;
  r.to_dev_us = dma(src_iova, edu::kBuffer, bytes, irq);
  if (irq) {
    uint64_t c = wait_irq(2000);
    if (!c) fail("%s: no MSI for the RAM->device DMA completion within 2 s", bdf_.c_str());
    r.msi_events += c;
    w32(edu::kIrqAck, edu::kDmaIrqStatus);
  }
  r.to_ram_us = dma(edu::kBuffer, dst_iova, bytes, irq | edu::kCmdToRam);
  if (irq) {
    uint64_t c = wait_irq(2000);
    if (!c) fail("%s: no MSI for the device->RAM DMA completion within 2 s", bdf_.c_str());
    r.msi_events += c;
    w32(edu::kIrqAck, edu::kDmaIrqStatus);
  }
  for (uint32_t i = 0; i < 4096; i++) {
    uint8_t want = i < bytes ? src[i] : 0xee;
    if (dst[i] != want)
      fail("%s: DMA data mismatch at byte %u: 0x%02x, want 0x%02x (src iova 0x%llx, dst iova 0x%llx)",
           bdf_.c_str(), i, dst[i], want, static_cast<unsigned long long>(src_iova),
           static_cast<unsigned long long>(dst_iova));
  }
  return r;
}

EduMsiResult EduVfio::raise_msis(unsigned n) {
  EduMsiResult r;
  uint64_t sum = 0;
  for (unsigned i = 0; i < n; i++) {
    uint64_t t0 = now_us();
    w32(edu::kIrqRaise, 0x1);
    uint64_t c = wait_irq(2000);
    uint64_t dt = now_us() - t0;
    w32(edu::kIrqAck, 0x1);
    if (!c) fail("%s: MSI %u of %u lost (no eventfd signal within 2 s)", bdf_.c_str(), i + 1, n);
    r.received += c;
    r.raised++;
    if (i == 0) r.first_us = dt;
    sum += dt;
    r.max_us = std::max(r.max_us, dt);
  }
  // A late duplicate edge would show up here; tolerated, but counted.
  r.received += wait_irq(0);
  r.avg_us = n ? sum / n : 0;
  return r;
}

}  // namespace pinless::testbed
