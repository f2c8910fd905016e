// A VFIO PCI device scripted on FakeSys for the vfio unit tests: GET_INFO, GET_REGION_INFO
// (with an optional sparse-mmap capability, growing argsz like the kernel), GET_IRQ_INFO,
// RESET, SET_IRQS, the cdev BIND/ATTACH ioctls and a 256-byte config space behind the config
// region (pread/pwrite); other regions read their `data` (e.g. the ROM, index 6). Records what
// the code did. Thread-compatible.
#pragma once

#include <linux/vfio.h>

#include <array>
#include <cstring>
#include <vector>

#include "fakes/fake_sys.h"
#include "pinless/iommu/uapi/iommufd.h"

namespace pinless::testing {

class FakeVfioPci {
 public:
  static constexpr uint64_t kConfigOffset = uint64_t(7) << 40;
  struct Region {
    uint64_t size = 0;
    uint32_t flags = 0;
    std::vector<std::pair<uint64_t, uint64_t>> sparse;  // offset, size
    std::vector<uint8_t> data;  // contents read by pread (regions other than config); may be short
  };
  struct IrqSet {
    uint32_t index, start, count, flags;
    std::vector<int32_t> fds;
  };

  explicit FakeVfioPci(FakeSys& sys, const std::string& cdev = "/dev/vfio/devices/vfio0") : sys_(sys) {
    regions.resize(9);
    irq_counts = {1, 1, 0};
    // edu-like: 1234:11e8, class 0x00ff00, MSI capability at 0x40 (64-bit, 1 vector).
    put16(0x00, 0x1234);
    put16(0x02, 0x11e8);
    put16(0x06, 0x0010);
    config[0x08] = 0x10;
    config[0x0b] = 0x00;
    config[0x0a] = 0xff;
    put32(0x10, 0x0);  // BAR0: 32-bit memory
    config[0x34] = 0x40;
    config[0x40] = 0x05;
    config[0x41] = 0x00;
    put16(0x42, 0x0080);  // 64-bit, 1 vector
    regions[0] = {1 << 20, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP, {}};
    regions[7] = {256, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE, {}};

    sys.on_open(cdev, [this](const char*, int) {
      if (open_err) return -open_err;
      return fd = sys_.new_fd();
    });
    sys.on_ioctl(VFIO_DEVICE_BIND_IOMMUFD, [this](int, unsigned long, void* a) {
      auto* b = static_cast<vfio_device_bind_iommufd*>(a);
      if (b->argsz < 16) return -EINVAL;
      if (bind_err) return -bind_err;
      b->out_devid = 7;
      return ++binds, 0;
    });
    sys.on_ioctl(VFIO_DEVICE_ATTACH_IOMMUFD_PT, [this](int, unsigned long, void* a) {
      attached_pt = static_cast<vfio_device_attach_iommufd_pt*>(a)->pt_id;
      return 0;
    });
    sys.on_ioctl(VFIO_DEVICE_GET_INFO, [this](int, unsigned long, void* a) {
      auto* i = static_cast<vfio_device_info*>(a);
      i->flags = VFIO_DEVICE_FLAGS_PCI | (can_reset ? VFIO_DEVICE_FLAGS_RESET : 0);
      i->num_regions = 9;
      i->num_irqs = 5;
      return 0;
    });
    sys.on_ioctl(VFIO_DEVICE_GET_REGION_INFO, [this](int, unsigned long, void* a) { return region_info(a); });
    sys.on_ioctl(VFIO_DEVICE_GET_IRQ_INFO, [this](int, unsigned long, void* a) {
      auto* i = static_cast<vfio_irq_info*>(a);
      i->flags = VFIO_IRQ_INFO_EVENTFD;
      i->count = i->index < irq_counts.size() ? irq_counts[i->index] : 0;
      return 0;
    });
    sys.on_ioctl(VFIO_DEVICE_RESET, [this](int, unsigned long, void*) { return ++resets, 0; });
    sys.on_ioctl(VFIO_DEVICE_SET_IRQS, [this](int, unsigned long, void* a) {
      auto* s = static_cast<vfio_irq_set*>(a);
      IrqSet rec{s->index, s->start, s->count, s->flags, {}};
      if (s->flags & VFIO_IRQ_SET_DATA_EVENTFD) {
        for (uint32_t k = 0; k < s->count; ++k) {
          int32_t v;
          std::memcpy(&v, s->data + k * 4, 4);
          rec.fds.push_back(v);
        }
      }
      irq_sets.push_back(rec);
      return 0;
    });
    sys.on_read([this](int, void* buf, size_t n, off_t off) -> ssize_t {
      if (uint64_t(off) < kConfigOffset) {
        uint64_t index = uint64_t(off) >> 40, at = uint64_t(off) & ((uint64_t(1) << 40) - 1);
        if (index >= regions.size() || at + n > regions[index].data.size()) return -EINVAL;
        std::memcpy(buf, regions[index].data.data() + at, n);
        return ssize_t(n);
      }
      uint64_t o = uint64_t(off) - kConfigOffset;
      if (o + n > config.size()) return -EINVAL;
      std::memcpy(buf, config.data() + o, n);
      return ssize_t(n);
    });
    sys.on_write([this](int, void* buf, size_t n, off_t off) -> ssize_t {
      uint64_t o = uint64_t(off) - kConfigOffset;
      if (uint64_t(off) < kConfigOffset || o + n > config.size()) return -EINVAL;
      std::memcpy(config.data() + o, buf, n);
      writes.push_back({uint32_t(o), uint32_t(n)});
      return ssize_t(n);
    });
  }

  void put16(size_t o, uint16_t v) { std::memcpy(&config[o], &v, 2); }
  void put32(size_t o, uint32_t v) { std::memcpy(&config[o], &v, 4); }
  uint16_t get16(size_t o) const { uint16_t v; std::memcpy(&v, &config[o], 2); return v; }

  // Adds an MSI-X capability at 0x50 (after MSI) with `vectors`, table in `bar` at 0, PBA at 0x800.
  void add_msix(uint16_t vectors, uint8_t bar) {
    config[0x41] = 0x50;
    config[0x50] = 0x11;
    config[0x51] = 0x00;
    put16(0x52, uint16_t(vectors - 1));
    put32(0x54, 0x0000 | bar);
    put32(0x58, 0x0800 | bar);
    irq_counts[2] = vectors;
  }

  FakeSys& sys_;
  std::array<uint8_t, 256> config{};
  std::vector<Region> regions;
  std::vector<uint32_t> irq_counts;
  bool can_reset = true;
  int open_err = 0;
  int bind_err = 0;
  int fd = -1;
  int binds = 0;
  int resets = 0;
  uint32_t attached_pt = 0;
  std::vector<IrqSet> irq_sets;
  std::vector<std::pair<uint32_t, uint32_t>> writes;  // config offset, size

 private:
  int region_info(void* a) {
    auto* ri = static_cast<vfio_region_info*>(a);
    if (ri->index >= regions.size()) return -EINVAL;
    const Region& r = regions[ri->index];
    uint32_t need = sizeof(vfio_region_info);
    if (!r.sparse.empty()) need += uint32_t(sizeof(vfio_region_info_cap_sparse_mmap) + 16 * r.sparse.size());
    uint32_t given = ri->argsz;
    ri->flags = r.flags | (r.sparse.empty() ? 0 : VFIO_REGION_INFO_FLAG_CAPS);
    ri->size = r.size;
    ri->offset = uint64_t(ri->index) << 40;
    ri->cap_offset = 0;
    ri->argsz = need;
    if (given < need) return 0;  // the kernel: "give me more", caps not filled
    if (!r.sparse.empty()) {
      ri->cap_offset = sizeof(vfio_region_info);
      auto* cap = reinterpret_cast<uint8_t*>(a) + sizeof(vfio_region_info);
      vfio_info_cap_header h{VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1, 0};
      std::memcpy(cap, &h, sizeof(h));
      uint32_t nr = uint32_t(r.sparse.size()), zero = 0;
      std::memcpy(cap + 8, &nr, 4);
      std::memcpy(cap + 12, &zero, 4);
      for (size_t k = 0; k < r.sparse.size(); ++k) {
        std::memcpy(cap + 16 + 16 * k, &r.sparse[k].first, 8);
        std::memcpy(cap + 24 + 16 * k, &r.sparse[k].second, 8);
      }
    }
    return 0;
  }
};

}  // namespace pinless::testing
