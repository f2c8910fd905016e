// MicroVmControl: the control API's view of a running MicroVm (api/vm_control.h): its
// configuration and devices, live counters, pause/resume of the vCPUs, the ACPI power button
// with a deadline, and the hard stop. Borrows the VM and the event loop (both outlive it; the
// loop's timers never run after the loop has stopped). Event-loop thread only.
#pragma once

#include <chrono>

#include "pinless/vmm/api/server.h"
#include "pinless/vmm/api/vm_control.h"
#include "pinless/vmm/event_loop.h"
#include "microvm.h"

namespace pinless::vmm {

class MicroVmControl final : public api::VmControl {
 public:
  // How long pause() waits for every vCPU to leave KVM_RUN.
  static constexpr std::chrono::milliseconds kPauseWait{1000};

  MicroVmControl(MicroVm& vm, EventLoop& loop) : vm_(vm), loop_(loop) {}
  // Its own counters join vm.counters ("api").
  void set_server(const api::ApiServer* server) { server_ = server; }

  std::string state() const override;
  api::Json info() const override;
  api::Json counters() const override;
  std::string timeline_json() const override;
  [[nodiscard]] Status pause() override;
  [[nodiscard]] Status resume() override;
  [[nodiscard]] Status shutdown(uint64_t timeout_ms) override;
  [[nodiscard]] Status stop() override;
  [[nodiscard]] Status set_ram_region(const RamRegionChange& change) override;

 private:
  MicroVm& vm_;
  EventLoop& loop_;
  const api::ApiServer* server_ = nullptr;
  bool shutting_down_ = false;
};

}  // namespace pinless::vmm
