// VirtioPciDevice, part 1 of 3: the PCI function (identity, BAR, capabilities), BAR access
// dispatch and the PCI_CFG window. Parts 2 and 3: virtio_pci_common.cpp (negotiation and
// queues), virtio_pci_interrupts.cpp (MSI-X vectors).
#include "pinless/virtio/virtio_pci.h"

#include <array>
#include <cstring>
#include <fmt/format.h>

namespace pinless::virtio {
namespace {

// Vendor capability cfg_type values (virtio 1.x, 4.1.4).
constexpr uint8_t kCfgCommon = 1, kCfgNotify = 2, kCfgIsr = 3, kCfgDevice = 4, kCfgPci = 5;
// virtio_pci_cap without the id and next bytes: cap_len, cfg_type, bar, id, pad[2],
// offset (le32) at body 6, length (le32) at body 10.
constexpr size_t kCapBody = 14;

std::vector<uint8_t> vendor_cap(uint8_t cfg_type, uint8_t extra, uint64_t offset, uint64_t length) {
  std::vector<uint8_t> b(kCapBody + extra, 0);
  b[0] = uint8_t(2 + kCapBody + extra);  // cap_len counts the id and next bytes too
  b[1] = cfg_type;
  b[2] = VirtioPciDevice::kBar;
  uint32_t off = uint32_t(offset), len = uint32_t(length);
  std::memcpy(&b[6], &off, 4);
  std::memcpy(&b[10], &len, 4);
  return b;
}

uint64_t load(std::span<const uint8_t> d) {
  uint64_t v = 0;
  std::memcpy(&v, d.data(), std::min<size_t>(d.size(), 8));
  return v;
}
void store(std::span<uint8_t> d, uint64_t v) { std::memcpy(d.data(), &v, std::min<size_t>(d.size(), 8)); }

}  // namespace

VirtioPciDevice::VirtioPciDevice(Sys& sys, std::unique_ptr<VirtioDevice> device, const GuestRam& ram,
                                 pci::MsiRoutes* routes)
    : sys_(sys),
      device_(std::move(device)),
      ram_(ram),
      routes_(routes),
      config_(pci::PciIdentity{kVendor, uint16_t(kDeviceIdBase + device_->device_id()), device_->pci_class(), 1,
                               kVendor, 0x40, 0}) {}

VirtioPciDevice::~VirtioPciDevice() {
  std::lock_guard lock(mu_);
  device_->reset();
  if (routes_) {
    for (auto& v : vectors_) {
      if (auto s = routes_->release_gsi(v.gsi); !s) logger("vmm")->warn("{}: {}", name(), s.error().message());
    }
  }
}

Result<std::unique_ptr<VirtioPciDevice>> VirtioPciDevice::create(Sys& sys, std::unique_ptr<VirtioDevice> device,
                                                                 const GuestRam& ram, pci::MsiRoutes* routes) {
  if (!device) return fail("virtio-pci", EINVAL, "no device");
  std::unique_ptr<VirtioPciDevice> d(new VirtioPciDevice(sys, std::move(device), ram, routes));
  PINLESS_TRY_VOID(d->build());
  return d;
}

Status VirtioPciDevice::build() {
  device_features_ = device_->features() & ~kFeatureAccessPlatform;
  if (!(device_features_ & kFeatureVersion1)) return fail("virtio-pci", EINVAL, name() + ": device does not offer VERSION_1");
  max_sizes_ = device_->queue_max_sizes();
  if (max_sizes_.empty() || max_sizes_.size() > 64)
    return fail("virtio-pci", EINVAL, fmt::format("{}: {} queues (1..64)", name(), max_sizes_.size()));
  for (uint16_t s : max_sizes_) {
    if (s == 0 || s > kMaxQueueSize || (s & (s - 1)))
      return fail("virtio-pci", EINVAL, fmt::format("{}: queue size {} is not a power of two", name(), s));
  }
  if (device_->config_size() > kDeviceMax)
    return fail("virtio-pci", EINVAL, fmt::format("{}: config of {} bytes", name(), device_->config_size()));
  queues_.resize(max_sizes_.size());
  for (size_t i = 0; i < queues_.size(); ++i) queues_[i].size = max_sizes_[i];

  PINLESS_TRY_VOID(config_.add_bar(kBar, pci::BarKind::kMem64, kBarSize));
  PINLESS_TRY_VOID(config_.add_capability(pci::kCapVendor, vendor_cap(kCfgCommon, 0, kCommonOffset, kCommonSize)));
  auto notify = vendor_cap(kCfgNotify, 4, kNotifyOffset, uint64_t(kNotifyMultiplier) * max_sizes_.size());
  std::memcpy(&notify[kCapBody], &kNotifyMultiplier, 4);
  PINLESS_TRY_VOID(config_.add_capability(pci::kCapVendor, notify));
  PINLESS_TRY_VOID(config_.add_capability(pci::kCapVendor, vendor_cap(kCfgIsr, 0, kIsrOffset, 1)));
  if (device_->config_size() > 0) {
    PINLESS_TRY_VOID(config_.add_capability(pci::kCapVendor,
                                            vendor_cap(kCfgDevice, 0, kDeviceOffset, device_->config_size())));
  }
  // PCI_CFG: bar, offset, length and the data window are the driver's to write.
  std::vector<uint8_t> pcicfg = vendor_cap(kCfgPci, 4, 0, 0);
  pcicfg[2] = 0;
  std::vector<uint8_t> wmask(pcicfg.size(), 0);
  wmask[2] = 0xff;
  for (size_t i = 6; i < wmask.size(); ++i) wmask[i] = 0xff;
  pci_cfg_cap_ = PINLESS_TRY(config_.add_capability(pci::kCapVendor, pcicfg, wmask));
  uint16_t nvec = uint16_t(1 + max_sizes_.size());
  msix_cap_ = PINLESS_TRY(pci::add_msix_capability(config_, nvec, kBar, uint32_t(kMsixTableOffset), kBar,
                                                   uint32_t(kMsixPbaOffset)));
  return setup_vectors();
}

uint32_t VirtioPciDevice::config_read(uint16_t offset, uint8_t size) {
  std::lock_guard lock(mu_);
  uint16_t data = uint16_t(pci_cfg_cap_ + 16);
  if (offset >= data && offset < data + 4) {
    uint32_t v = 0;
    pci_cfg_access(false, &v);
    // An access narrower than the window reads the bytes it covers.
    return uint32_t((uint64_t(v) >> (8 * (offset - data))) & (size == 4 ? 0xffffffffu : (1u << (8 * size)) - 1));
  }
  return config_.read(offset, size);
}

void VirtioPciDevice::config_write(uint16_t offset, uint8_t size, uint32_t value) {
  std::lock_guard lock(mu_);
  uint16_t data = uint16_t(pci_cfg_cap_ + 16);
  if (offset == data && size == 4) {
    pci_cfg_access(true, &value);
    return;
  }
  config_.write(offset, size, value);
  if (offset < msix_cap_ + 4 && offset + size > msix_cap_ + 2) sync_msix_control();
}

// The PCI_CFG window: the driver put bar, offset and length (1, 2 or 4) into the capability;
// reading or writing its data dword accesses the BAR there. Anything else reads as 0.
void VirtioPciDevice::pci_cfg_access(bool write, uint32_t* value) {
  uint8_t bar = uint8_t(config_.read(uint16_t(pci_cfg_cap_ + 4), 1));
  uint32_t off = config_.read(uint16_t(pci_cfg_cap_ + 8), 4);
  uint32_t len = config_.read(uint16_t(pci_cfg_cap_ + 12), 4);
  bool ok = bar == kBar && (len == 1 || len == 2 || len == 4) && off % len == 0 && off < kBarSize;
  if (!ok) {
    if (warn_.allow()) logger("vmm")->warn("{}: PCI_CFG access bar {} offset {:#x} length {}", name(), bar, off, len);
    if (!write) *value = 0;
    return;
  }
  std::array<uint8_t, 4> buf{};
  if (write) {
    std::memcpy(buf.data(), value, 4);
    bar_write(off, std::span<const uint8_t>(buf.data(), len));
  } else {
    bar_read(off, std::span<uint8_t>(buf.data(), len));
    std::memcpy(value, buf.data(), 4);
  }
}

std::vector<pci::BarInfo> VirtioPciDevice::bars() const {
  std::lock_guard lock(mu_);
  return config_.bars();
}

void VirtioPciDevice::set_bar_move_handler(pci::BarMoveFn fn) {
  std::lock_guard lock(mu_);
  config_.set_bar_move_handler(std::move(fn));
}

std::string VirtioPciDevice::name() const { return device_->name(); }

void VirtioPciDevice::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  bar_read(offset, data);
}

void VirtioPciDevice::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  bar_write(offset, data);
}

void VirtioPciDevice::bar_read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  size_t n = data.size();
  if (n == 0 || n > 8 || offset >= kBarSize || n > kBarSize - offset) return;
  if (offset >= kMsixTableOffset && offset < kMsixPbaOffset) {
    msix_->table_read(offset - kMsixTableOffset, data);
  } else if (offset >= kMsixPbaOffset) {
    msix_->pba_read(offset - kMsixPbaOffset, data);
  } else if (offset < kCommonOffset + kCommonSize) {
    if (n <= 4) store(data, common_read(offset - kCommonOffset, n));
  } else if (offset == kIsrOffset && n == 1) {
    data[0] = isr_;  // reading clears it (4.1.4.5)
    isr_ = 0;
  } else if (offset >= kDeviceOffset && offset - kDeviceOffset + n <= device_->config_size()) {
    device_->read_config(uint32_t(offset - kDeviceOffset), data);
  }
}

void VirtioPciDevice::bar_write(uint64_t offset, std::span<const uint8_t> data) {
  size_t n = data.size();
  if (n == 0 || n > 8 || offset >= kBarSize || n > kBarSize - offset) return;
  if (offset >= kMsixTableOffset && offset < kMsixPbaOffset) {
    msix_->table_write(offset - kMsixTableOffset, data);
    flush_pending();
  } else if (offset >= kMsixPbaOffset) {
    msix_->pba_write(offset - kMsixPbaOffset, data);
  } else if (offset < kCommonOffset + kCommonSize) {
    if (n <= 4) common_write(offset - kCommonOffset, n, uint32_t(load(data)));
  } else if (offset >= kNotifyOffset && offset < notify_offset(num_queues())) {
    // Queue i notifies at its own address; the value written is the queue index again.
    uint64_t rel = offset - kNotifyOffset;
    if (rel % kNotifyMultiplier == 0) notify_locked(uint16_t(rel / kNotifyMultiplier));
  } else if (offset >= kDeviceOffset && offset - kDeviceOffset + n <= device_->config_size()) {
    device_->write_config(uint32_t(offset - kDeviceOffset), data);
  }
}

void VirtioPciDevice::notify(uint16_t index) {
  std::lock_guard lock(mu_);
  notify_locked(index);
}

void VirtioPciDevice::notify_locked(uint16_t index) {
  if (index >= queues_.size()) return;
  Queue& q = queues_[index];
  if (!(status_ & kStatusDriverOk) || (status_ & kStatusNeedsReset) || !q.ring) return;
  auto pushed = device_->process(index, *q.ring);
  if (!pushed) {
    needs_reset(pushed.error());
    return;
  }
  if (*pushed && q.ring->wants_interrupt()) raise(q.vector, kIsrQueue);
}

uint8_t VirtioPciDevice::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

uint64_t VirtioPciDevice::driver_features() const {
  std::lock_guard lock(mu_);
  return driver_features_;
}

uint64_t VirtioPciDevice::interrupts() const {
  std::lock_guard lock(mu_);
  return interrupts_;
}

}  // namespace pinless::virtio
