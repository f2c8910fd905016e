// VirtioSlot: puts one VirtioPciDevice into the VM. Wherever the guest decodes the device's
// BAR, the whole BAR is claimed on the MMIO bus (register accesses exit to pinless) and each
// queue's notify address gets a KVM ioeventfd, so a notification is an eventfd signal inside
// KVM, served on the event loop (start()) by VirtioPciDevice::notify(), instead of a full
// exit on the vCPU. A BAR move, or memory decode switched off, moves or removes both.
// Owns the notify eventfds; borrows the Vm and the IoBus (both outlive it); shares the device
// with the PCI root. Thread-safe: BAR moves arrive on a vCPU thread (under the PCI root's
// lock), notifications on the event loop; one mutex guards the placement.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "pinless/base/fd.h"
#include "pinless/base/log.h"
#include "pinless/base/result.h"
#include "pinless/base/sys.h"
#include "pinless/virtio/virtio_pci.h"
#include "pinless/vmm/event_loop.h"
#include "pinless/vmm/io_bus.h"
#include "pinless/vmm/kvm/vm.h"

namespace pinless::vmm {

class VirtioSlot {
 public:
  // How a queue notification reaches the device:
  //   kIoeventfd  KVM signals an eventfd and resumes the guest; the event loop serves it
  //               (the device works in parallel with the vCPU);
  //   kExit       the notify write exits to pinless and the vCPU thread that wrote it serves
  //               it at once (for request/response devices whose driver kicks and then polls
  //               for the answer: no hand-off to another thread that the spinning vCPU may
  //               keep from running).
  enum class Notify : uint8_t { kIoeventfd, kExit };
  // Installs the device's BAR-move handler. Nothing is claimed until the BAR is decoded.
  [[nodiscard]] static Result<std::unique_ptr<VirtioSlot>> create(Sys& sys, Vm& vm, IoBus& bus,
                                                                  std::shared_ptr<virtio::VirtioPciDevice> dev,
                                                                  Notify notify = Notify::kIoeventfd);
  ~VirtioSlot();
  VirtioSlot(const VirtioSlot&) = delete;
  VirtioSlot& operator=(const VirtioSlot&) = delete;

  // Serves the notify eventfds on `loop` (which must not outlive this slot's fds).
  [[nodiscard]] Status start(EventLoop& loop);

  std::shared_ptr<virtio::VirtioPciDevice> device() const { return dev_; }
  // Where the BAR is claimed now, if it is.
  std::optional<uint64_t> placed_at() const;
  // Notifications that arrived through an ioeventfd (the others took an MMIO exit).
  uint64_t ioeventfd_notifies() const { return notifies_.load(); }

  // KVM matches ioeventfds on the access width: Linux's virtio-pci writes the 16-bit queue index.
  static constexpr uint32_t kNotifyWidth = 2;

 private:
  VirtioSlot(Sys& sys, Vm& vm, IoBus& bus, std::shared_ptr<virtio::VirtioPciDevice> dev)
      : sys_(sys), vm_(vm), bus_(bus), dev_(std::move(dev)) {}
  void on_bar_move(const pci::BarMove& move);
  void unplace_locked();
  void place_locked(uint64_t at);

  Sys& sys_;
  Vm& vm_;
  IoBus& bus_;
  std::shared_ptr<virtio::VirtioPciDevice> dev_;
  std::vector<UniqueFd> notify_;  // one per queue
  mutable std::mutex mu_;
  std::optional<uint64_t> at_;  // BAR claimed on the bus here
  std::vector<bool> ioeventfd_;  // per queue: assigned at *at_
  std::atomic<uint64_t> notifies_{0};
  RateLimit warn_{5, 10000};
};

}  // namespace pinless::vmm
