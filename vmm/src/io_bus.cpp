#include "pinless/base/size.h"
#include "pinless/vmm/io_bus.h"

#include <cstring>
#include <mutex>

namespace pinless::vmm {
namespace {
const char* space_name(IoBus::Space s) { return s == IoBus::Space::kPio ? "PIO" : "MMIO"; }

}  // namespace

Status IoBus::insert(Map& map, Space space, uint64_t base, uint64_t size, pci::IoDevice* dev,
                     std::string name) {
  auto bad = [&](const std::string& why) {
    return fail("register " + std::string(space_name(space)) + " range", EINVAL,
                name + " at " + format_hex(base) + "+" + format_hex(size), why);
  };
  if (dev == nullptr) return bad("no device");
  if (size == 0) return bad("empty range");
  if (base + size < base) return bad("range wraps around");
  std::unique_lock lock(mu_);
  // The first range starting at or after base, and the one before it, are the only candidates.
  auto next = map.lower_bound(base);
  if (next != map.end() && next->first < base + size) {
    return bad("overlaps " + next->second.name + " at " + format_hex(next->first));
  }
  if (next != map.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.size > base) {
      return bad("overlaps " + prev->second.name + " at " + format_hex(prev->first));
    }
  }
  map.emplace(base, Entry{size, dev, std::move(name)});
  return {};
}

Status IoBus::register_pio(uint16_t base, uint32_t size, pci::IoDevice* dev, std::string name) {
  if (uint64_t(base) + size > 0x10000) {
    return fail("register PIO range", EINVAL, name + " at " + format_hex(base), "ports end at 0xffff");
  }
  return insert(pio_, Space::kPio, base, size, dev, std::move(name));
}

Status IoBus::register_mmio(Gpa base, uint64_t size, pci::IoDevice* dev, std::string name) {
  return insert(mmio_, Space::kMmio, base.value(), size, dev, std::move(name));
}

bool IoBus::erase(Map& map, uint64_t base, const pci::IoDevice* dev) {
  std::unique_lock lock(mu_);
  auto it = map.find(base);
  if (it == map.end() || it->second.dev != dev) return false;
  map.erase(it);
  return true;
}

bool IoBus::unregister_pio(uint16_t base, const pci::IoDevice* dev) { return erase(pio_, base, dev); }
bool IoBus::unregister_mmio(Gpa base, const pci::IoDevice* dev) { return erase(mmio_, base.value(), dev); }

pci::IoDevice* IoBus::find(const Map& map, uint64_t addr, uint64_t len, uint64_t* offset) {
  auto it = map.upper_bound(addr);
  if (it == map.begin()) return nullptr;
  --it;
  uint64_t off = addr - it->first;
  // Guest-controlled addr and len: the whole access must lie inside the claimed range.
  if (off >= it->second.size || len > it->second.size - off) return nullptr;
  *offset = off;
  return it->second.dev;
}

bool IoBus::dispatch(Space space, uint64_t addr, uint8_t* data, size_t len, bool is_write) {
  pci::IoDevice* dev = nullptr;
  uint64_t offset = 0;
  {
    std::shared_lock lock(mu_);
    dev = find(space == Space::kPio ? pio_ : mmio_, addr, len, &offset);
  }
  // Devices are called without the bus lock, so a device may (re)map ranges from a handler.
  if (dev != nullptr) {
    if (is_write) {
      dev->write(offset, std::span<const uint8_t>(data, len));
    } else {
      dev->read(offset, std::span<uint8_t>(data, len));
    }
    return true;
  }
  if (!is_write) std::memset(data, 0xff, len);
  if (unclaimed_.allow()) {
    logger("vmm")->debug("unclaimed {} {} at {:#x} size {}", space_name(space),
                         is_write ? "write" : "read", addr, len);
  }
  return false;
}

bool IoBus::pio_read(uint16_t port, std::span<uint8_t> data) {
  return dispatch(Space::kPio, port, data.data(), data.size(), false);
}
bool IoBus::pio_write(uint16_t port, std::span<const uint8_t> data) {
  return dispatch(Space::kPio, port, const_cast<uint8_t*>(data.data()), data.size(), true);
}
bool IoBus::mmio_read(Gpa addr, std::span<uint8_t> data) {
  return dispatch(Space::kMmio, addr.value(), data.data(), data.size(), false);
}
bool IoBus::mmio_write(Gpa addr, std::span<const uint8_t> data) {
  return dispatch(Space::kMmio, addr.value(), const_cast<uint8_t*>(data.data()), data.size(), true);
}

std::string IoBus::owner(Space space, uint64_t addr) const {
  std::shared_lock lock(mu_);
  uint64_t off = 0;
  const Map& map = space == Space::kPio ? pio_ : mmio_;
  auto it = map.upper_bound(addr);
  if (it == map.begin()) return "";
  --it;
  off = addr - it->first;
  return off < it->second.size ? it->second.name : "";
}

}  // namespace pinless::vmm
