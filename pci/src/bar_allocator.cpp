#include "pinless/pci/bar_allocator.h"

#include <algorithm>
#include <bit>
#include <vector>

#include "pinless/pci/config_space.h"

namespace pinless::pci {

PciBarAllocator::PciBarAllocator(Range<Gpa> mmio32, Range<Gpa> mmio64, Range<uint64_t> io)
    : mmio32_{mmio32.start.value(), mmio32.end().value(), mmio32.start.value()},
      mmio64_{mmio64.start.value(), mmio64.end().value(), mmio64.start.value()},
      io_{io.start, io.end(), io.start} {}

std::optional<uint64_t> PciBarAllocator::take(Window& w, uint64_t size) {
  if (w.end <= w.start) return std::nullopt;
  uint64_t a = align_up(w.next, size);
  if (a < w.next || a >= w.end || size > w.end - a) return std::nullopt;  // incl. wrap-around
  w.next = a + size;
  return a;
}

Result<uint64_t> PciBarAllocator::allocate(BarKind kind, uint64_t size) {
  if (!std::has_single_bit(size)) {
    return fail("PCI BAR allocation", EINVAL, "size " + std::to_string(size), "not a power of two");
  }
  std::optional<uint64_t> a;
  switch (kind) {
    case BarKind::kIo:
      a = take(io_, size);
      break;
    case BarKind::kMem32:
      a = take(mmio32_, size);
      break;
    case BarKind::kMem64:
      a = take(mmio64_, size);
      if (!a && size <= (1ull << 31)) a = take(mmio32_, size);
      break;
  }
  if (!a) {
    return fail("PCI BAR allocation", ENOSPC, "BAR of " + std::to_string(size) + " bytes",
                "the PCI windows are full");
  }
  return *a;
}

Status PciBarAllocator::assign(PciConfigSpace& config) {
  // Largest first, so natural alignment wastes as little of the window as possible.
  std::vector<BarInfo> bars = config.bars();
  std::stable_sort(bars.begin(), bars.end(),
                   [](const BarInfo& a, const BarInfo& b) { return a.size > b.size; });
  for (const BarInfo& bar : bars) {
    uint64_t addr = PINLESS_TRY(allocate(bar.kind, bar.size));
    PINLESS_TRY_VOID(config.set_bar_address(bar.index, addr));
  }
  return {};
}

}  // namespace pinless::pci
