#include "microvm.h"

#include <unistd.h>

#include <functional>

#include "pinless/base/log.h"
#include "pinless/base/size.h"
#include "pinless/vmm/seccomp_policy.h"

namespace pinless::vmm {

MicroVm::~MicroVm() { stop(); }

Status MicroVm::start(EventLoop& loop, const seccomp::Filter& vcpu_filter) {
  // The VM's end: whoever ends it (a device on a vCPU thread, a vCPU, a stop signal) writes
  // the VmState eventfd; the loop drains it and stops.
  VmState& state = *state_;
  PINLESS_TRY_VOID(loop.add_fd(state.wake_fd(), "VM end eventfd", [this, &state, &loop] {
    uint64_t v;
    while (sys_.read(state.wake_fd(), &v, sizeof(v)) == sizeof(v)) {
    }
    if (state.stopping()) loop.stop();
    return EventLoop::Next::kWait;
  }));
  PINLESS_TRY_VOID(watch_faults(loop));
  // virtio-iommu notifications (ioeventfds) are served on the loop too.
  if (viommu_) PINLESS_TRY_VOID(viommu_->start(loop));
  for (auto& vcpu : vcpus_) {
    std::function<void()> first;
    if (vcpu->id() == 0) first = [this] { timeline_.mark_once("first_kvm_run"); };
    std::function<Status()> setup = [&vcpu_filter, id = vcpu->id(), selftest = config_.seccomp_selftest == "vcpu"]() -> Status {
      PINLESS_TRY_VOID(seccomp::install(vcpu_filter, "vcpu" + std::to_string(id)));
      if (selftest && id == 0) call_forbidden_syscall("vcpu0");
      return Status{};
    };
    threads_.start(*vcpu, bus_, state, std::move(setup), std::move(first));
  }
  logger("vmm")->info("guest started: {} vCPU(s), {} RAM", config_.cpus, format_size(config_.memory.size));
  return {};
}

// I/O page faults of fault-driven DMA: served on the loop, never on a vCPU thread. The queue
// stops after a read budget while work may remain (kAgain: no new edge would report it). A
// queue that fails ends the VM: its devices would wait for answers forever.
Status MicroVm::watch_faults(EventLoop& loop) {
  int fd = vfio_ ? vfio_->fault_fd() : -1;
  if (fd < 0 || faults_watched_) return {};
  VmState& state = *state_;
  PINLESS_TRY_VOID(loop.add_fd(fd, "iommufd fault queue", [this, &state] {
    auto more = vfio_->on_fault_readable();
    if (!more) {
      state.fail("I/O page fault queue: " + more.error().message());
      return EventLoop::Next::kWait;
    }
    return *more ? EventLoop::Next::kAgain : EventLoop::Next::kWait;
  }));
  faults_watched_ = true;
  return {};
}

Status MicroVm::set_ram_region(uint64_t ram_offset, std::optional<bool> fault, std::optional<uint64_t> premap_pages,
                               std::optional<iommu::WindowPolicy> window, EventLoop& loop) {
  if (!vfio_) return fail("vm.ram-region", ENOTSUP, "no assigned device", "guest RAM has a DMA policy only with --device");
  PINLESS_TRY_VOID(vfio_->set_ram_region(ram_offset, fault, premap_pages, window));
  if (auto st = watch_faults(loop); !st) {
    // Devices now fault into a queue nobody reads: they would wait forever.
    state_->fail("vm.ram-region: " + st.error().message());
    return st;
  }
  return {};
}

void MicroVm::stop() {
  if (state_ && state_->outcome() != VmState::Outcome::kSignal && state_->outcome() != VmState::Outcome::kStopped &&
      state_->outcome() != VmState::Outcome::kFailed && state_->outcome() != VmState::Outcome::kRunning) {
    timeline_.mark_once("guest_shutdown");
  }
  threads_.stop_all();
}

void MicroVm::press_power_button() { devices_->press_power_button(); }

void MicroVm::finish() {
  if (vfio_) vfio_->finish(timeline_);
  if (viommu_) viommu_->finish(timeline_);
}

}  // namespace pinless::vmm
