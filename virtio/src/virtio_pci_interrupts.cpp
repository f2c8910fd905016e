// VirtioPciDevice, part 3 of 3: MSI-X. One eventfd per vector, attached to its own GSI; the
// MSI-X table's changes become route updates. Raising a vector writes its eventfd unless the
// guest has it masked, in which case it stays pending (in the PBA too) and is delivered when
// the guest unmasks it.
#include <sys/eventfd.h>

#include <fmt/format.h>

#include "pinless/virtio/virtio_pci.h"

namespace pinless::virtio {

Status VirtioPciDevice::setup_vectors() {
  uint16_t n = uint16_t(1 + max_sizes_.size());
  if (routes_) {
    for (uint16_t v = 0; v < n; ++v) {
      int fd = sys_.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (fd < 0) return fail("eventfd", -fd, fmt::format("{} vector {}", name(), v));
      Vector vec;
      vec.event = UniqueFd(sys_, fd);
      vec.gsi = PINLESS_TRY(routes_->allocate_gsi());
      vectors_.push_back(std::move(vec));
      PINLESS_TRY_VOID(routes_->attach_irqfd(vectors_.back().gsi, fd));
    }
  }
  // Runs with the table's lock held, from table_write/set_control under mu_: only forwards.
  auto table = pci::MsixTable::create(n, [this](uint16_t v, const pci::MsiMessage& msg, bool masked) {
    if (!routes_ || v >= vectors_.size()) return;
    if (auto s = routes_->update(vectors_[v].gsi, msg, masked); !s && warn_.allow())
      logger("vmm")->warn("{}: MSI-X vector {}: {}", name(), v, s.error().message());
  });
  if (!table) return std::unexpected(std::move(table).error());
  msix_.emplace(std::move(*table));
  return {};
}

void VirtioPciDevice::sync_msix_control() {
  msix_->set_control(uint16_t(config_.read(uint16_t(msix_cap_ + 2), 2)));
  flush_pending();
}

void VirtioPciDevice::raise(uint16_t vector, uint8_t isr_bit) {
  if (vector == kNoVector || vector >= vectors_.size()) {
    // No vector (or no interrupt routing): the ISR bit is all the driver can see.
    isr_ |= isr_bit;
    return;
  }
  if (msix_->masked(vector)) {
    vectors_[vector].pending = true;
    msix_->set_pending(vector, true);
    return;
  }
  uint64_t one = 1;
  if (sys_.write(vectors_[vector].event.get(), &one, sizeof one) != ssize_t(sizeof one) && warn_.allow())
    logger("vmm")->warn("{}: MSI-X vector {}: eventfd write failed", name(), vector);
  interrupts_++;
}

void VirtioPciDevice::flush_pending() {
  for (uint16_t v = 0; v < vectors_.size(); ++v) {
    if (!vectors_[v].pending || msix_->masked(v)) continue;
    vectors_[v].pending = false;
    msix_->set_pending(v, false);
    raise(v, 0);
  }
}

}  // namespace pinless::virtio
