// VfioPciDevice, part 2 of 3: BARs (sizing, mmapped pieces as memory slots, trapped pieces
// on the I/O registry, moves) and the expansion ROM.
#include "pinless/vfio/vfio_pci_device.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <fmt/format.h>

namespace pinless::vfio {
namespace {

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

Status VfioPciDevice::setup_bars(std::span<const uint8_t> real) {
  for (uint8_t i = 0; i < pci::kNumBars; ++i) {
    const RegionInfo* r = dev_->region(i);
    if (r == nullptr || r->size == 0) continue;
    BarBits bits = decode_bar(real, i);
    pci::BarKind kind = bits.type == BarType::kIo      ? pci::BarKind::kIo
                        : bits.type == BarType::kMem64 ? pci::BarKind::kMem64
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
    if (kind != pci::BarKind::kIo && env_.memslots != nullptr) {
      RegionInfo region = *r;
      region.size = std::min(r->size, size);
      pieces = mmap_pieces(region, traps);
      if (pieces.size() > kSlotsPerBar) pieces.resize(kSlotsPerBar);
    }
    for (size_t k = 0; k < pieces.size(); ++k) {
      Piece p;
      p.in_bar = pieces[k];
      p.map = PINLESS_TRY(dev_->map_region(i, pieces[k].start, pieces[k].size));
      p.slot = env_.first_slot + i * kSlotsPerBar + uint32_t(k);
      p.claim = std::make_unique<Trap>(*this, i, pieces[k].start);
      b.mapped.push_back(std::move(p));
    }
    for (const auto& t : holes(pieces, size)) b.trapped.push_back({t, std::make_unique<Trap>(*this, i, t.start)});
    if (kind == pci::BarKind::kMem64) ++i;
  }
  return {};
}

void VfioPciDevice::setup_rom() {
  const RegionInfo* r = dev_->region(kRomRegion);
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
    if (auto s = env_.memslots->set_memory_slot(p.slot, {Gpa(at + p.in_bar.start), 0}, p.map.bytes()); !s) {
      logger("vfio")->error("{}: BAR {}: removing memslot {}: {}", name_, index, p.slot, s.error().message());
    }
    if (env_.bus != nullptr) env_.bus->unregister_mmio(Gpa(at + p.in_bar.start), p.claim.get());
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
    // Claimed on the bus first: it refuses ranges that belong to someone else there (ECAM,
    // IOAPIC/LAPIC, traps), which KVM would let the memslot shadow; KVM then refuses overlaps
    // with RAM and other memslots. What either refuses stays unmapped until the next move.
    Gpa gpa(at + p.in_bar.start);
    if (env_.bus != nullptr) {
      std::string what = fmt::format("{} BAR{}+{:#x}", name(), index, p.in_bar.start);
      if (auto s = env_.bus->register_mmio(gpa, p.in_bar.size, p.claim.get(), what); !s) {
        p.live = false;
        if (warn_.allow()) logger("vfio")->warn("{} (left unmapped)", s.error().message());
        continue;
      }
    }
    Status s = env_.memslots->set_memory_slot(p.slot, {gpa, p.in_bar.size}, p.map.bytes());
    p.live = s.has_value();
    if (!s) {
      if (env_.bus != nullptr) env_.bus->unregister_mmio(gpa, p.claim.get());
      if (warn_.allow()) logger("vfio")->warn("{}: BAR {} at {:#x}: {}", name_, index, at, s.error().message());
    }
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
    const RegionInfo* r = dev_->region(kRomRegion);
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

}  // namespace pinless::vfio
