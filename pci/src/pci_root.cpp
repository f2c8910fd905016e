#include "pinless/pci/pci_root.h"

#include <algorithm>

#include "pinless/pci/config_space_device.h"

namespace pinless::pci {
namespace {

constexpr uint32_t kConfigAddressEnable = 1u << 31;
// CONFIG_ADDRESS keeps enable, bus, device, function and the dword register number.
constexpr uint32_t kConfigAddressMask = kConfigAddressEnable | 0x00fffffc;

uint32_t load_le(std::span<const uint8_t> data) {
  uint32_t v = 0;
  for (size_t i = 0; i < data.size() && i < 4; ++i) v |= uint32_t(data[i]) << (8 * i);
  return v;
}

void store_le(std::span<uint8_t> data, uint32_t v) {
  for (size_t i = 0; i < data.size(); ++i) data[i] = i < 4 ? uint8_t(v >> (8 * i)) : 0xff;
}

bool valid_size(size_t size) { return size == 1 || size == 2 || size == 4; }

std::string devfn_text(uint8_t devfn) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "00:%02x.%x", devfn >> 3, devfn & 7);
  return buf;
}

}  // namespace

PciRoot::PciRoot() {
  PciIdentity id;
  id.vendor_id = kHostBridgeVendor;
  id.device_id = kHostBridgeDevice;
  id.class_code = 0x060000;  // bridge: host bridge
  slots_[0] = std::make_shared<ConfigSpaceDevice>("host-bridge", id);
}

Result<uint8_t> PciRoot::add_device(std::shared_ptr<PciDevice> dev) {
  uint8_t slot = 0;
  {
    std::lock_guard lock(mu_);
    for (uint8_t s = 1; s < kMaxDevices && slot == 0; ++s) {
      if (!slots_[s]) slot = s;
    }
  }
  if (slot == 0) {
    return fail("PCI add device", ENOSPC, dev ? dev->name() : "",
                "bus 0 has 31 device slots and all are taken");
  }
  return add_device_at(slot, std::move(dev));
}

Result<uint8_t> PciRoot::add_device_at(uint8_t slot, std::shared_ptr<PciDevice> dev) {
  if (!dev) return fail("PCI add device", EINVAL, "null device");
  if (slot == 0 || slot >= kMaxDevices) {
    return fail("PCI add device", EINVAL, dev->name(), "slot must be 1..31");
  }
  std::lock_guard lock(mu_);
  if (slots_[slot]) {
    return fail("PCI add device", EBUSY, dev->name(),
                "slot " + std::to_string(slot) + " already holds " + slots_[slot]->name());
  }
  logger("dev")->info("pci: {} at {}", dev->name(), devfn_text(make_devfn(slot, 0)));
  slots_[slot] = std::move(dev);
  return make_devfn(slot, 0);
}

std::shared_ptr<PciDevice> PciRoot::remove_device(uint8_t devfn) {
  uint8_t slot = devfn >> 3;
  if ((devfn & 7) != 0 || slot == 0 || slot >= kMaxDevices) return nullptr;
  std::lock_guard lock(mu_);
  return std::move(slots_[slot]);
}

std::shared_ptr<PciDevice> PciRoot::device(uint8_t devfn) const {
  std::lock_guard lock(mu_);
  if ((devfn & 7) != 0) return nullptr;
  return slots_[devfn >> 3];
}

PciDevice* PciRoot::find_locked(uint8_t bus, uint8_t devfn) const {
  // Only bus 0 exists and every device is single-function.
  if (bus != 0 || (devfn & 7) != 0) return nullptr;
  return slots_[devfn >> 3].get();
}

uint32_t PciRoot::config_read(uint8_t bus, uint8_t devfn, uint16_t offset, uint8_t size) {
  uint32_t ones = size >= 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
  if (!valid_size(size) || offset % size != 0 || offset + size > kConfigSpaceSize) return ones;
  std::lock_guard lock(mu_);
  PciDevice* dev = find_locked(bus, devfn);
  if (dev == nullptr) return ones;
  return dev->config_read(offset, size) & ones;
}

void PciRoot::config_write(uint8_t bus, uint8_t devfn, uint16_t offset, uint8_t size,
                           uint32_t value) {
  if (!valid_size(size) || offset % size != 0 || offset + size > kConfigSpaceSize) return;
  std::lock_guard lock(mu_);
  PciDevice* dev = find_locked(bus, devfn);
  if (dev != nullptr) dev->config_write(offset, size, value);
}

void PciRoot::log_bad(const char* what, uint64_t offset, size_t size) {
  if (bad_.allow()) {
    logger("dev")->warn("pci: {} access of {} bytes at {:#x} ignored", what, size, offset);
  }
}

// ECAM: guest-controlled offset (bounded by the registered window) and size.
void PciRoot::Ecam::read(uint64_t offset, std::span<uint8_t> data) {
  uint16_t reg = uint16_t(offset & 0xfff);
  if (!valid_size(data.size()) || reg % data.size() != 0) {
    root_.log_bad("misaligned ECAM", offset, data.size());
    std::fill(data.begin(), data.end(), 0xff);
    return;
  }
  uint8_t bus = uint8_t(offset >> 20);
  if ((offset >> 20) > 0xff) {
    std::fill(data.begin(), data.end(), 0xff);
    return;
  }
  store_le(data, root_.config_read(bus, uint8_t(offset >> 12), reg, uint8_t(data.size())));
}

void PciRoot::Ecam::write(uint64_t offset, std::span<const uint8_t> data) {
  uint16_t reg = uint16_t(offset & 0xfff);
  if (!valid_size(data.size()) || reg % data.size() != 0 || (offset >> 20) > 0xff) {
    root_.log_bad("misaligned ECAM", offset, data.size());
    return;
  }
  root_.config_write(uint8_t(offset >> 20), uint8_t(offset >> 12), reg, uint8_t(data.size()),
                     load_le(data));
}

// CF8/CFC: guest-controlled offset (0..7) and size. Only a dword access at 0xcf8 reaches
// CONFIG_ADDRESS (byte access to 0xcf9 would be the reset control register of a real
// chipset; we have none); 0xcfc..0xcff select a register within the addressed dword.
void PciRoot::ConfigIo::read(uint64_t offset, std::span<uint8_t> data) {
  if (offset == 0 && data.size() == 4) {
    std::lock_guard lock(root_.mu_);
    store_le(data, root_.config_address_);
    return;
  }
  uint64_t byte = offset - 4;
  if (offset < 4 || !valid_size(data.size()) || byte % data.size() != 0 || byte + data.size() > 4) {
    std::fill(data.begin(), data.end(), 0xff);
    return;
  }
  uint32_t addr;
  {
    std::lock_guard lock(root_.mu_);
    addr = root_.config_address_;
  }
  if ((addr & kConfigAddressEnable) == 0) {
    std::fill(data.begin(), data.end(), 0xff);
    return;
  }
  store_le(data, root_.config_read(uint8_t(addr >> 16), uint8_t(addr >> 8),
                                   uint16_t((addr & 0xfc) + byte), uint8_t(data.size())));
}

void PciRoot::ConfigIo::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset == 0 && data.size() == 4) {
    std::lock_guard lock(root_.mu_);
    root_.config_address_ = load_le(data) & kConfigAddressMask;
    return;
  }
  // Linux's mechanism-1 probe writes one byte to 0xcfb (a chipset's mechanism select on
  // real hardware). Sub-dword writes to CONFIG_ADDRESS change nothing: ignore them quietly.
  if (offset < 4) {
    logger("dev")->debug("pci: {}-byte write to {:#x} ignored", data.size(), 0xcf8 + offset);
    return;
  }
  uint64_t byte = offset - 4;
  if (!valid_size(data.size()) || byte % data.size() != 0 || byte + data.size() > 4) {
    root_.log_bad("CF8/CFC", 0xcf8 + offset, data.size());
    return;
  }
  uint32_t addr;
  {
    std::lock_guard lock(root_.mu_);
    addr = root_.config_address_;
  }
  if ((addr & kConfigAddressEnable) == 0) return;
  root_.config_write(uint8_t(addr >> 16), uint8_t(addr >> 8), uint16_t((addr & 0xfc) + byte),
                     uint8_t(data.size()), load_le(data));
}

}  // namespace pinless::pci
