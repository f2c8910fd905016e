// VfioPciDevice, part 3 of 3: MSI and MSI-X (eventfds, GSIs, VFIO_DEVICE_SET_IRQS, routes).
#include "pinless/vfio/vfio_pci_device.h"

#include <sys/eventfd.h>

#include <algorithm>
#include <fmt/format.h>

namespace pinless::vfio {

Status VfioPciDevice::setup_vectors() {
  if (env_.router == nullptr) return {};
  auto make = [&](uint32_t n, std::vector<Vector>& out) -> Status {
    for (uint32_t v = 0; v < n; ++v) {
      int fd = sys_.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (fd < 0) return fail("eventfd", -fd, fmt::format("vector {}", v));
      Vector vec;
      vec.event = UniqueFd(sys_, fd);
      vec.gsi = PINLESS_TRY(env_.router->allocate_gsi());
      out.push_back(std::move(vec));
      PINLESS_TRY_VOID(env_.router->attach_irqfd(out.back().gsi, fd));
    }
    return {};
  };
  if (msi_) {
    uint32_t n = std::min({dev_->irq(kMsiIrq)->count, kMaxMsiVectors, 1u << msi_->max_vectors_log2});
    PINLESS_TRY_VOID(make(n, msi_vectors_));
  }
  if (msix_cap_) {
    uint32_t n = std::min<uint32_t>(dev_->irq(kMsixIrq)->count, msix_cap_->vectors);
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
    // A failed disable shows up as a failed enable just below, which is logged.
    if (msi_on_ && want != msi_nvec_) (void)dev_->disable_irqs(kMsiIrq);
    if (auto s = dev_->set_irq_eventfds(kMsiIrq, 0, fds); !s) {
      if (warn_.allow()) logger("vfio")->warn("{}: enabling MSI: {}", name_, s.error().message());
      return;
    }
    msi_on_ = true;
    msi_nvec_ = want;
  } else if (!enabled && msi_on_) {
    if (auto s = dev_->disable_irqs(kMsiIrq); !s && warn_.allow()) {
      logger("vfio")->warn("{}: disabling MSI: {}", name_, s.error().message());
    }
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
    if (auto s = dev_->set_irq_eventfds(kMsixIrq, 0, fds); !s) {
      if (warn_.allow()) logger("vfio")->warn("{}: enabling MSI-X: {}", name_, s.error().message());
      return;
    }
    msix_on_ = true;
  } else if (!enabled && msix_on_) {
    if (auto s = dev_->disable_irqs(kMsixIrq); !s && warn_.allow()) {
      logger("vfio")->warn("{}: disabling MSI-X: {}", name_, s.error().message());
    }
    msix_on_ = false;
  }
}

}  // namespace pinless::vfio
