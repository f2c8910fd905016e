// VirtioSlot: a virtio-pci BAR on the MMIO bus and its notify addresses on KVM ioeventfds,
// following the guest's BAR programming.
#include "pinless/vmm/virtio/virtio_slot.h"

#include <sys/eventfd.h>

#include <fmt/format.h>

namespace pinless::vmm {

Result<std::unique_ptr<VirtioSlot>> VirtioSlot::create(Sys& sys, Vm& vm, IoBus& bus,
                                                       std::shared_ptr<virtio::VirtioPciDevice> dev, Notify notify) {
  std::unique_ptr<VirtioSlot> s(new VirtioSlot(sys, vm, bus, std::move(dev)));
  // kExit: no eventfds at all, so every notify write takes the MMIO path to the device.
  for (uint16_t q = 0; notify == Notify::kIoeventfd && q < s->dev_->num_queues(); ++q) {
    int fd = sys.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) return fail("eventfd", -fd, fmt::format("{} queue {} notify", s->dev_->name(), q));
    s->notify_.emplace_back(sys, fd);
  }
  s->ioeventfd_.assign(s->notify_.size(), false);
  VirtioSlot* self = s.get();
  s->dev_->set_bar_move_handler([self](const pci::BarMove& m) { self->on_bar_move(m); });
  return s;
}

VirtioSlot::~VirtioSlot() {
  dev_->set_bar_move_handler(nullptr);
  std::lock_guard lock(mu_);
  unplace_locked();
}

Status VirtioSlot::start(EventLoop& loop) {
  for (uint16_t q = 0; q < notify_.size(); ++q) {
    int fd = notify_[q].get();
    PINLESS_TRY_VOID(loop.add_fd(fd, fmt::format("{} queue {} notify", dev_->name(), q), [this, fd, q] {
      uint64_t n = 0;
      if (sys_.read(fd, &n, sizeof n) == ssize_t(sizeof n)) {
        notifies_ += n;
        dev_->notify(q);
      }
      return EventLoop::Next::kWait;
    }));
  }
  return {};
}

std::optional<uint64_t> VirtioSlot::placed_at() const {
  std::lock_guard lock(mu_);
  return at_;
}

// vCPU thread, with the PCI root's and the device's locks held: only the bus and KVM here.
void VirtioSlot::on_bar_move(const pci::BarMove& move) {
  if (move.bar.index != virtio::VirtioPciDevice::kBar) return;
  std::lock_guard lock(mu_);
  unplace_locked();
  if (move.to) place_locked(*move.to);
}

void VirtioSlot::unplace_locked() {
  if (!at_) return;
  for (uint16_t q = 0; q < notify_.size(); ++q) {
    if (!ioeventfd_[q]) continue;
    Gpa addr(*at_ + virtio::VirtioPciDevice::notify_offset(q));
    if (auto s = vm_.remove_ioeventfd(notify_[q].get(), addr, kNotifyWidth); !s)
      logger("vmm")->warn("{}: {}", dev_->name(), s.error().message());
    ioeventfd_[q] = false;
  }
  bus_.unregister_mmio(Gpa(*at_), dev_.get());
  at_.reset();
}

// A BAR the guest put over something else stays unclaimed (its accesses reach the other
// device, or nothing), exactly as the bus refuses it; the device keeps working once moved.
void VirtioSlot::place_locked(uint64_t at) {
  if (auto s = bus_.register_mmio(Gpa(at), virtio::VirtioPciDevice::kBarSize, dev_.get(), dev_->name()); !s) {
    if (warn_.allow()) logger("vmm")->warn("{}: BAR at {:#x} not claimed: {}", dev_->name(), at, s.error().message());
    return;
  }
  at_ = at;
  for (uint16_t q = 0; q < notify_.size(); ++q) {
    Gpa addr(at + virtio::VirtioPciDevice::notify_offset(q));
    // Without the ioeventfd the write still works, through the bus and an exit.
    if (auto s = vm_.add_ioeventfd(notify_[q].get(), addr, kNotifyWidth); !s) {
      if (warn_.allow()) logger("vmm")->warn("{}: queue {}: {}", dev_->name(), q, s.error().message());
      continue;
    }
    ioeventfd_[q] = true;
  }
}

}  // namespace pinless::vmm
