// VfioPciDevice, part 1 of 3: lifecycle (create, build, shutdown) and config-space
// virtualisation (which bytes are emulated, capability relinking, MSI/MSI-X register masks).
#include "pinless/vfio/vfio_pci_device.h"

#include <algorithm>

namespace pinless::vfio {
namespace {

pci::PciIdentity identity_of(std::span<const uint8_t> c) {
  auto u16 = [&](size_t o) { return uint16_t(c[o] | c[o + 1] << 8); };
  pci::PciIdentity id;
  id.vendor_id = u16(pci::kVendorId);
  id.device_id = u16(pci::kDeviceId);
  id.revision = c[pci::kRevisionId];
  id.class_code = uint32_t(c[0x09] | c[0x0a] << 8 | c[0x0b] << 16);
  id.subsystem_vendor_id = u16(pci::kSubsystemVendorId);
  id.subsystem_id = u16(pci::kSubsystemId);
  id.interrupt_pin = 0;  // no INTx routing in pinless: MSI/MSI-X only
  return id;
}

}  // namespace

VfioPciDevice::VfioPciDevice(Sys& sys, std::unique_ptr<VfioDevice> dev, Env env, const pci::PciIdentity& id)
    : sys_(sys), dev_(std::move(dev)), env_(env), name_(dev_->name()), config_(id) {}

Result<std::shared_ptr<VfioPciDevice>> VfioPciDevice::create(Sys& sys, std::unique_ptr<VfioDevice> dev,
                                                             Env env) {
  std::array<uint8_t, 256> real{};
  PINLESS_TRY_VOID(dev->config_read_all(real));
  std::shared_ptr<VfioPciDevice> d(new VfioPciDevice(sys, std::move(dev), env, identity_of(real)));
  d->real_ = real;
  if (auto s = d->build(real); !s) {
    d->shutdown();
    return std::unexpected(std::move(s).error().within(d->name()));
  }
  return d;
}

VfioPciDevice::~VfioPciDevice() { shutdown(); }

Status VfioPciDevice::build(std::span<const uint8_t> real) {
  for (uint16_t i = 0; i < 0x40; ++i) emulated_[i] = true;
  PINLESS_TRY_VOID(setup_caps(real));
  PINLESS_TRY_VOID(setup_bars(real));
  PINLESS_TRY_VOID(setup_vectors());
  setup_rom();
  config_.set_bar_move_handler([this](const pci::BarMove& m) {
    on_bar_move(m);
    if (external_move_) external_move_(m);
  });
  // The device starts with decoding and DMA off; the guest turns them on.
  PINLESS_TRY_VOID(dev_->config_write(pci::kCommand, 2, pci::kCommandIntxDisable));
  return {};
}

Status VfioPciDevice::setup_caps(std::span<const uint8_t> real) {
  std::vector<PciCap> all = walk_capabilities(real);
  auto overlaps_kept = [&](const PciCap& c) {
    return std::any_of(kept_caps_.begin(), kept_caps_.end(), [&](const PciCap& k) {
      return c.offset < k.offset + k.length && k.offset < c.offset + c.length;
    });
  };
  for (const auto& c : all) {
    // The device's list is not trusted: a capability cut short by the end of the area, or
    // overlapping one already kept, stays hidden. Kept ones are then whole and disjoint, so
    // relinking one (or emulating its registers) cannot rewrite another's header.
    if (c.length != capability_length(real, c.id, c.offset) || overlaps_kept(c)) continue;
    if (c.id == pci::kCapMsi && !msi_ && dev_->irq(kMsiIrq) && dev_->irq(kMsiIrq)->count > 0) {
      msi_ = decode_msi(real, c.offset);
      kept_caps_.push_back(c);
    } else if (c.id == pci::kCapMsix && !msix_cap_ && dev_->irq(kMsixIrq) &&
               dev_->irq(kMsixIrq)->count > 0) {
      msix_cap_ = decode_msix(real, c.offset);
      kept_caps_.push_back(c);
    } else if (c.id == pci::kCapPm) {
      kept_caps_.push_back(c);
    }
  }
  // Copy the kept capabilities at their real offsets and relink them; hidden ones vanish
  // from the list (their bytes read from the device but nothing points at them).
  uint16_t status = uint16_t(config_.read(pci::kStatus, 2));
  uint8_t next = 0;
  for (auto it = kept_caps_.rbegin(); it != kept_caps_.rend(); ++it) {
    std::vector<uint8_t> bytes(real.begin() + it->offset, real.begin() + it->offset + it->length);
    bytes[1] = next;
    config_.set_bytes(it->offset, bytes);
    std::vector<uint8_t> none(it->length, 0);
    config_.set_write_mask(it->offset, none);
    for (uint16_t i = 0; i < it->length; ++i) emulated_[it->offset + i] = true;
    next = it->offset;
  }
  const uint8_t ptr[1] = {next};
  config_.set_bytes(pci::kCapabilitiesPointer, ptr);
  config_.set_u16(pci::kStatus, next ? uint16_t(status | pci::kStatusCapList) : uint16_t(status & ~pci::kStatusCapList));

  if (msi_) {
    // Writable: enable (bit 0) and Multiple Message Enable (6:4), address, data, mask bits.
    uint8_t o = msi_->offset;
    const uint8_t control[2] = {0x71, 0x00};
    config_.set_write_mask(o + 2, control);
    const uint8_t lo[4] = {0xfc, 0xff, 0xff, 0xff};
    config_.set_write_mask(o + 4, lo);
    const uint8_t ff[4] = {0xff, 0xff, 0xff, 0xff};
    if (msi_->is64) config_.set_write_mask(o + 8, ff);
    config_.set_write_mask(uint16_t(o + msi_->data_offset()), std::span<const uint8_t>(ff, 2));
    if (msi_->per_vector_mask) config_.set_write_mask(uint16_t(o + msi_->mask_offset()), ff);
    // Start disabled with a zero message, whatever the device had.
    const uint8_t zero[10] = {};
    config_.set_bytes(o + 4, std::span<const uint8_t>(zero, msi_->is64 ? 10 : 6));
    uint16_t ctl = uint16_t(real[o + 2u] | real[o + 3u] << 8) & ~uint16_t(0x71);
    config_.set_u16(o + 2, ctl);
  }
  if (msix_cap_) {
    uint8_t o = msix_cap_->offset;
    const uint8_t control[2] = {0x00, 0xc0};  // enable (15), function mask (14)
    config_.set_write_mask(o + 2, control);
    uint16_t ctl = uint16_t(real[o + 2u] | real[o + 3u] << 8) & 0x07ff;
    config_.set_u16(o + 2, ctl);
    if (msix_cap_->table_bar >= pci::kNumBars || msix_cap_->pba_bar >= pci::kNumBars) {
      return fail("MSI-X capability", EINVAL, "table or PBA in a BAR that does not exist");
    }
  }
  return {};
}

// --- config space -------------------------------------------------------------------------

uint32_t VfioPciDevice::config_read(uint16_t offset, uint8_t size) {
  if (shut_ || !pci::PciConfigSpace::valid_access(offset, size)) return size >= 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
  if (offset >= 256) return 0;  // extended capabilities hidden
  if (offset >= pci::kRomBar && offset < pci::kRomBar + 4) {  // aligned: never crosses 0x34
    uint32_t v = rom_reg_ >> (8 * (offset - pci::kRomBar));
    return size >= 4 ? v : v & ((1u << (8 * size)) - 1);
  }
  bool all = true, none = true;
  for (uint16_t i = 0; i < size; ++i) (emulated(offset + i) ? none : all) = false;
  if (all) return config_.read(offset, size);
  uint32_t live = 0xffffffffu;
  if (auto r = dev_->config_read(offset, size)) live = *r;
  if (none) return live;
  uint32_t virt = config_.read(offset, size), v = 0;
  for (uint16_t i = 0; i < size; ++i) {
    uint32_t byte = ((emulated(offset + i) ? virt : live) >> (8 * i)) & 0xff;
    v |= byte << (8 * i);
  }
  return v;
}

void VfioPciDevice::config_write(uint16_t offset, uint8_t size, uint32_t value) {
  if (shut_ || !pci::PciConfigSpace::valid_access(offset, size) || offset >= 256) return;
  if (offset >= pci::kRomBar && offset < pci::kRomBar + 4) {
    rom_write(offset, size, value);
    return;
  }
  // Only emulated bytes take writes: the rest of 0x40..0xff is read-only passthrough.
  bool any = false;
  for (uint16_t i = 0; i < size; ++i) any = any || emulated(offset + i);
  if (!any) return;
  config_.write(offset, size, value);
  auto touches = [&](uint16_t start, uint16_t len) { return offset < start + len && start < offset + size; };
  if (touches(pci::kCommand, 2)) {
    sync_command();
    sync_rom();
  }
  if (msi_ && touches(msi_->offset, msi_->length())) {
    // Multiple Message Enable never exceeds what the device can do.
    uint16_t ctl = uint16_t(config_.read(uint16_t(msi_->offset + 2), 2));
    if (((ctl >> 4) & 7) > msi_->max_vectors_log2) {
      config_.set_u16(uint16_t(msi_->offset + 2), uint16_t((ctl & ~0x70) | msi_->max_vectors_log2 << 4));
    }
    sync_msi();
  }
  if (msix_cap_ && touches(uint16_t(msix_cap_->offset + 2), 2)) sync_msix_control();
}

void VfioPciDevice::sync_command() {
  uint16_t guest = config_.command();
  uint16_t cmd = (guest & (pci::kCommandIo | pci::kCommandMemory | pci::kCommandBusMaster)) | pci::kCommandIntxDisable;
  if (auto s = dev_->config_write(pci::kCommand, 2, cmd); !s && warn_.allow()) {
    logger("vfio")->warn("{}: command register: {}", name_, s.error().message());
  }
}

void VfioPciDevice::shutdown() {
  if (shut_) return;
  {
    std::lock_guard lock(bar_mu_);
    for (uint8_t i = 0; i < pci::kNumBars; ++i) {
      if (bars_[i].at) unplace_bar(i, *bars_[i].at);
    }
    if (rom_at_ && env_.bus != nullptr) env_.bus->unregister_mmio(Gpa(*rom_at_), rom_trap_.get());
    rom_at_.reset();
    shut_ = true;
  }
  // Teardown goes on whatever fails (the device is reset and closed next); failures are logged.
  for (auto [on, index] : {std::pair{msi_on_, kMsiIrq}, std::pair{msix_on_, kMsixIrq}}) {
    if (!dev_ || !on) continue;
    if (auto s = dev_->disable_irqs(index); !s) logger("vfio")->warn("{}: shutdown: {}", name_, s.error().message());
  }
  msi_on_ = msix_on_ = false;
  if (env_.router != nullptr) {
    for (auto* set : {&msi_vectors_, &msix_vectors_}) {
      for (auto& v : *set) {
        if (auto s = env_.router->release_gsi(v.gsi); !s) {
          logger("vfio")->warn("{}: shutdown: {}", name_, s.error().message());
        }
      }
    }
  }
  msix_.reset();
  msi_vectors_.clear();
  msix_vectors_.clear();
  for (auto& b : bars_) {
    b.mapped.clear();
    b.trapped.clear();
  }
  dev_.reset();  // resets (if it can) and closes the device
}

}  // namespace pinless::vfio