#include "builder_vfio_pci.h"

#include <sys/eventfd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <fmt/format.h>

namespace pinless::vmm {
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

// Complement of `pieces` (sorted, disjoint) inside [0, size).
std::vector<Range<uint64_t>> holes(const std::vector<Range<uint64_t>>& pieces, uint64_t size) {
  std::vector<Range<uint64_t>> out;
  uint64_t at = 0;
  for (const auto& p : pieces) {
    if (p.start > at) out.push_back({at, p.start - at});
    at = std::max(at, p.start + p.size);
  }
  if (at < size) out.push_back({at, size - at});
  return out;
}

}  // namespace

VfioPciDevice::VfioPciDevice(Sys& sys, std::unique_ptr<vfio::VfioDevice> dev, Env env, const pci::PciIdentity& id)
    : sys_(sys), dev_(std::move(dev)), env_(env), name_(dev_->name()), config_(id) {}

Result<std::shared_ptr<VfioPciDevice>> VfioPciDevice::create(Sys& sys, std::unique_ptr<vfio::VfioDevice> dev,
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
  std::vector<vfio::PciCap> all = vfio::walk_capabilities(real);
  for (const auto& c : all) {
    if (c.id == pci::kCapMsi && !msi_ && dev_->irq(vfio::kMsiIrq) && dev_->irq(vfio::kMsiIrq)->count > 0) {
      msi_ = vfio::decode_msi(real, c.offset);
      kept_caps_.push_back(c);
    } else if (c.id == pci::kCapMsix && !msix_cap_ && dev_->irq(vfio::kMsixIrq) &&
               dev_->irq(vfio::kMsixIrq)->count > 0) {
      msix_cap_ = vfio::decode_msix(real, c.offset);
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

Status VfioPciDevice::setup_bars(std::span<const uint8_t> real) {
  for (uint8_t i = 0; i < pci::kNumBars; ++i) {
    const vfio::RegionInfo* r = dev_->region(i);
    if (r == nullptr || r->size == 0) continue;
    vfio::BarBits bits = vfio::decode_bar(real, i);
    pci::BarKind kind = bits.type == vfio::BarType::kIo      ? pci::BarKind::kIo
                        : bits.type == vfio::BarType::kMem64 ? pci::BarKind::kMem64
                                                              : pci::BarKind::kMem32;
    if (kind == pci::BarKind::kMem64 && i + 1 >= pci::kNumBars) return fail("BAR", EINVAL, "64-bit BAR 5");
    uint64_t size = std::bit_ceil(std::max<uint64_t>(r->size, kind == pci::BarKind::kIo ? 4 : 16));
    PINLESS_TRY_VOID(config_.add_bar(i, kind, size, bits.prefetchable));
    BarState& b = bars_[i];
    b.present = true;
    b.kind = kind;
    b.size = size;
    // What is trapped: the MSI-X table/PBA pages, the parts VFIO will not let us mmap, and
    // everything when there is no VM to map into (or an I/O BAR).
    std::vector<Range<uint64_t>> traps;
    if (msix_cap_ && msix_cap_->table_bar == i) traps.push_back({msix_cap_->table_offset, msix_cap_->table_bytes()});
    if (msix_cap_ && msix_cap_->pba_bar == i) traps.push_back({msix_cap_->pba_offset, msix_cap_->pba_bytes()});
    std::vector<Range<uint64_t>> pieces;
    if (kind != pci::BarKind::kIo && env_.vm != nullptr) {
      vfio::RegionInfo region = *r;
      region.size = std::min(r->size, size);
      pieces = vfio::mmap_pieces(region, traps);
      if (pieces.size() > kSlotsPerBar) pieces.resize(kSlotsPerBar);
    }
    for (size_t k = 0; k < pieces.size(); ++k) {
      Piece p;
      p.in_bar = pieces[k];
      p.map = PINLESS_TRY(dev_->map_region(i, pieces[k].start, pieces[k].size));
      p.slot = env_.first_slot + i * kSlotsPerBar + uint32_t(k);
      b.mapped.push_back(std::move(p));
    }
    for (const auto& t : holes(pieces, size)) b.trapped.push_back({t, std::make_unique<Trap>(*this, i, t.start)});
    if (kind == pci::BarKind::kMem64) ++i;
  }
  return {};
}

Status VfioPciDevice::setup_vectors() {
  if (env_.router == nullptr) return {};
  auto make = [&](uint32_t n, std::vector<Vector>& out) -> Status {
    for (uint32_t v = 0; v < n; ++v) {
      int fd = sys_.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (fd < 0) return fail("eventfd", -fd, fmt::format("vector {}", v));
      Vector vec;
      vec.event = iommu::SysFd(sys_, fd);
      vec.gsi = PINLESS_TRY(env_.router->allocate_gsi());
      out.push_back(std::move(vec));
      PINLESS_TRY_VOID(env_.router->attach_irqfd(out.back().gsi, fd));
    }
    return {};
  };
  if (msi_) {
    uint32_t n = std::min({dev_->irq(vfio::kMsiIrq)->count, kMaxMsiVectors, 1u << msi_->max_vectors_log2});
    PINLESS_TRY_VOID(make(n, msi_vectors_));
  }
  if (msix_cap_) {
    uint32_t n = std::min<uint32_t>(dev_->irq(vfio::kMsixIrq)->count, msix_cap_->vectors);
    PINLESS_TRY_VOID(make(n, msix_vectors_));
    auto table = pci::MsixTable::create(msix_cap_->vectors, [this](uint16_t v, const pci::MsiMessage& msg, bool masked) {
      if (v >= msix_vectors_.size()) return;
      if (auto s = env_.router->update(msix_vectors_[v].gsi, msg, masked); !s && warn_.allow()) {
        logger("vfio")->warn("{}: MSI-X vector {}: {}", name_, v, s.error().message());
      }
    });
    if (!table) return std::unexpected(std::move(table).error());
    msix_.emplace(std::move(*table));
  }
  return {};
}

void VfioPciDevice::setup_rom() {
  const vfio::RegionInfo* r = dev_->region(kRomRegion);
  if (r == nullptr || r->size == 0) return;
  if (r->size > kMaxRomSize) {
    logger("vfio")->warn("{}: expansion ROM of {:#x} bytes is larger than a ROM BAR decodes: hidden", name_,
                         r->size);
    return;
  }
  rom_size_ = std::bit_ceil(std::max<uint64_t>(r->size, kMinRomSize));
  rom_trap_ = std::make_unique<Trap>(*this, uint8_t(kRomRegion), 0);
  logger("vfio")->debug("{}: expansion ROM of {:#x} bytes (BAR {:#x})", name_, r->size, rom_size_);
}

std::vector<Range<Gpa>> VfioPciDevice::mapped_pieces() const {
  std::vector<Range<Gpa>> out;
  for (const auto& b : bars_) {
    if (!b.at) continue;
    for (const auto& p : b.mapped) {
      if (p.live) out.push_back({Gpa(*b.at + p.in_bar.start), p.in_bar.size});
    }
  }
  return out;
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

void VfioPciDevice::sync_msi() {
  if (env_.router == nullptr || msi_vectors_.empty()) return;
  uint8_t o = msi_->offset;
  uint16_t control = uint16_t(config_.read(o + 2, 2));
  bool enabled = (control & 1) != 0;
  uint32_t want = std::min<uint32_t>(1u << std::min((control >> 4) & 7, 5), uint32_t(msi_vectors_.size()));
  uint64_t address = config_.read(o + 4, 4);
  if (msi_->is64) address |= uint64_t(config_.read(o + 8, 4)) << 32;
  uint32_t data = config_.read(uint16_t(o + msi_->data_offset()), 2);
  uint32_t mask = msi_->per_vector_mask ? config_.read(uint16_t(o + msi_->mask_offset()), 4) : 0;
  for (uint32_t v = 0; v < msi_vectors_.size(); ++v) {
    bool masked = !enabled || v >= want || ((mask >> v) & 1);
    // Multiple-message MSI: the device ORs the vector number into the low data bits.
    pci::MsiMessage msg{address, (data & ~(want - 1)) | v, std::nullopt};
    if (auto s = env_.router->update(msi_vectors_[v].gsi, msg, masked); !s && warn_.allow()) {
      logger("vfio")->warn("{}: MSI vector {}: {}", name_, v, s.error().message());
    }
  }
  if (enabled && (!msi_on_ || want != msi_nvec_)) {
    std::vector<int> fds;
    for (uint32_t v = 0; v < want; ++v) fds.push_back(msi_vectors_[v].event.get());
    if (msi_on_ && want != msi_nvec_) (void)dev_->disable_irqs(vfio::kMsiIrq);
    if (auto s = dev_->set_irq_eventfds(vfio::kMsiIrq, 0, fds); !s) {
      if (warn_.allow()) logger("vfio")->warn("{}: enabling MSI: {}", name_, s.error().message());
      return;
    }
    msi_on_ = true;
    msi_nvec_ = want;
  } else if (!enabled && msi_on_) {
    (void)dev_->disable_irqs(vfio::kMsiIrq);
    msi_on_ = false;
  }
}

void VfioPciDevice::sync_msix_control() {
  if (!msix_) return;
  uint16_t control = uint16_t(config_.read(uint16_t(msix_cap_->offset + 2), 2));
  msix_->set_control(control);
  bool enabled = (control & pci::MsixTable::kControlEnable) != 0;
  if (enabled && !msix_on_ && !msix_vectors_.empty()) {
    std::vector<int> fds;
    for (const auto& v : msix_vectors_) fds.push_back(v.event.get());
    if (auto s = dev_->set_irq_eventfds(vfio::kMsixIrq, 0, fds); !s) {
      if (warn_.allow()) logger("vfio")->warn("{}: enabling MSI-X: {}", name_, s.error().message());
      return;
    }
    msix_on_ = true;
  } else if (!enabled && msix_on_) {
    (void)dev_->disable_irqs(vfio::kMsixIrq);
    msix_on_ = false;
  }
}

// --- expansion ROM --------------------------------------------------------------------------

void VfioPciDevice::rom_write(uint16_t offset, uint8_t size, uint32_t value) {
  if (rom_size_ == 0) return;  // no ROM: the register is hardwired to 0
  uint32_t shift = 8 * (offset - pci::kRomBar);
  uint32_t mask = (size >= 4 ? 0xffffffffu : (1u << (8 * size)) - 1) << shift;
  uint32_t v = (rom_reg_ & ~mask) | ((value << shift) & mask);
  // Writable: the address bits the size allows (31:11 at most) and the enable bit.
  uint32_t addr_mask = uint32_t(~(rom_size_ - 1)) & 0xfffff800u;
  rom_reg_ = (v & addr_mask) | (v & 1u);
  sync_rom();
}

void VfioPciDevice::sync_rom() {
  if (rom_size_ == 0 || env_.bus == nullptr) return;
  std::lock_guard lock(bar_mu_);
  if (shut_) return;
  uint64_t addr = rom_reg_ & 0xfffff800u;
  std::optional<uint64_t> want;
  if ((rom_reg_ & 1u) != 0 && addr != 0 && (config_.command() & pci::kCommandMemory) != 0) want = addr;
  if (want == rom_at_) return;
  if (rom_at_) {
    env_.bus->unregister_mmio(Gpa(*rom_at_), rom_trap_.get());
    rom_at_.reset();
  }
  if (!want) {
    logger("vfio")->debug("{}: expansion ROM not decoded", name_);
    return;
  }
  // A guest value that overlaps another device's range is refused by the bus: the ROM then
  // stays unmapped until the guest programs something else.
  std::string what = fmt::format("{} ROM", name());
  if (auto s = env_.bus->register_mmio(Gpa(*want), rom_size_, rom_trap_.get(), what); !s) {
    if (warn_.allow()) logger("vfio")->warn("{} (left unmapped)", s.error().message());
    return;
  }
  rom_at_ = want;
  logger("vfio")->debug("{}: expansion ROM decoded at {:#x} ({:#x} bytes)", name_, *want, rom_size_);
}

// --- BARs -----------------------------------------------------------------------------------

void VfioPciDevice::on_bar_move(const pci::BarMove& m) {
  std::lock_guard lock(bar_mu_);
  if (shut_ || m.bar.index >= pci::kNumBars) return;
  if (m.from) unplace_bar(m.bar.index, *m.from);
  if (m.to) place_bar(m.bar.index, *m.to);
}

void VfioPciDevice::unplace_bar(uint8_t index, uint64_t at) {
  BarState& b = bars_[index];
  for (auto& p : b.mapped) {
    if (!p.live) continue;
    MemoryRegion gone{{Gpa(at + p.in_bar.start), 0}, p.map.bytes(), 0};
    if (auto s = env_.vm->map_memory(p.slot, gone); !s) {
      logger("vfio")->error("{}: BAR {}: removing memslot {}: {}", name_, index, p.slot, s.error().message());
    }
    p.live = false;
  }
  for (auto& t : b.trapped) {
    if (!t.live) continue;
    if (b.kind == pci::BarKind::kIo) {
      env_.bus->unregister_pio(uint16_t(at + t.in_bar.start), t.trap.get());
    } else {
      env_.bus->unregister_mmio(Gpa(at + t.in_bar.start), t.trap.get());
    }
    t.live = false;
  }
  b.at.reset();
}

void VfioPciDevice::place_bar(uint8_t index, uint64_t at) {
  BarState& b = bars_[index];
  for (auto& p : b.mapped) {
    MemoryRegion where{{Gpa(at + p.in_bar.start), p.in_bar.size}, p.map.bytes(), 0};
    Status s = env_.vm->map_memory(p.slot, where);
    p.live = s.has_value();
    if (!s && warn_.allow()) logger("vfio")->warn("{}: BAR {} at {:#x}: {}", name_, index, at, s.error().message());
  }
  for (auto& t : b.trapped) {
    if (env_.bus == nullptr) break;
    std::string what = fmt::format("{} BAR{}+{:#x}", name(), index, t.in_bar.start);
    Status s = b.kind == pci::BarKind::kIo
                   ? env_.bus->register_pio(uint16_t(at + t.in_bar.start), uint32_t(t.in_bar.size), t.trap.get(), what)
                   : env_.bus->register_mmio(Gpa(at + t.in_bar.start), t.in_bar.size, t.trap.get(), what);
    t.live = s.has_value();
    if (!s && warn_.allow()) logger("vfio")->warn("{}: {}", what, s.error().message());
  }
  b.at = at;
  logger("vfio")->debug("{}: BAR {} decoded at {:#x} ({} mmapped, {} trapped pieces)", name_, index, at,
                        b.mapped.size(), b.trapped.size());
}

void VfioPciDevice::Trap::read(uint64_t offset, std::span<uint8_t> data) {
  dev_.bar_access(bar_, base_ + offset, data, false);
}
void VfioPciDevice::Trap::write(uint64_t offset, std::span<const uint8_t> data) {
  dev_.bar_access(bar_, base_ + offset, std::span<uint8_t>(const_cast<uint8_t*>(data.data()), data.size()), true);
}

void VfioPciDevice::bar_access(uint8_t bar, uint64_t offset, std::span<uint8_t> data, bool is_write) {
  if (shut_) {
    if (!is_write) std::memset(data.data(), 0xff, data.size());
    return;
  }
  if (bar == kRomRegion) {
    // Read-only; the trap is the rounded-up size, bytes past the real region read all-ones.
    if (is_write) {
      if (warn_.allow()) logger("vfio")->warn("{}: write to the expansion ROM at {:#x} ignored", name_, offset);
      return;
    }
    std::memset(data.data(), 0xff, data.size());
    const vfio::RegionInfo* r = dev_->region(kRomRegion);
    uint64_t real = r == nullptr ? 0 : r->size;
    if (offset >= real) return;
    auto part = data.first(std::min<uint64_t>(data.size(), real - offset));
    if (auto s = dev_->region_read(kRomRegion, offset, part); !s) {
      std::memset(data.data(), 0xff, data.size());
      if (warn_.allow()) logger("vfio")->warn("{}: expansion ROM read at {:#x}: {}", name_, offset, s.error().message());
    }
    return;
  }
  // Guest-controlled offset and size: the MSI-X structures check their own bounds, the
  // device region access checks against the region size.
  if (msix_ && msix_cap_->table_bar == bar && offset >= msix_cap_->table_offset &&
      offset - msix_cap_->table_offset < msix_cap_->table_bytes()) {
    uint64_t o = offset - msix_cap_->table_offset;
    is_write ? msix_->table_write(o, data) : msix_->table_read(o, data);
    return;
  }
  if (msix_ && msix_cap_->pba_bar == bar && offset >= msix_cap_->pba_offset &&
      offset - msix_cap_->pba_offset < msix_cap_->pba_bytes()) {
    uint64_t o = offset - msix_cap_->pba_offset;
    if (is_write) return;
    // The real PBA reflects pending interrupts of the device: read it through.
    if (!dev_->region_read(bar, msix_cap_->pba_offset + o, data)) msix_->pba_read(o, data);
    return;
  }
  Status s = is_write ? dev_->region_write(bar, offset, data) : dev_->region_read(bar, offset, data);
  if (!s) {
    if (!is_write) std::memset(data.data(), 0xff, data.size());
    if (warn_.allow()) logger("vfio")->warn("{}: BAR {} access at {:#x}: {}", name_, bar, offset, s.error().message());
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
  if (dev_ && msi_on_) (void)dev_->disable_irqs(vfio::kMsiIrq);
  if (dev_ && msix_on_) (void)dev_->disable_irqs(vfio::kMsixIrq);
  msi_on_ = msix_on_ = false;
  if (env_.router != nullptr) {
    for (auto* set : {&msi_vectors_, &msix_vectors_}) {
      for (auto& v : *set) (void)env_.router->release_gsi(v.gsi);
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

}  // namespace pinless::vmm
