// MicroVm: a built VM, paused. The builder (builder.cpp) assembles it: the KVM VM, guest RAM
// with the kernel, initrd and boot tables loaded, the legacy devices and the PCI root on the
// buses, the VFIO devices with their DMA domain (pins made, fault regions ready), and the
// vCPUs created with their boot state. Nothing runs until start().
// start() registers the VM's event sources (VM end, I/O page faults) with the caller's event
// loop and starts one thread per vCPU; when the VM ends (guest poweroff/reset/crash, a stop
// signal reported through state(), a failure) it stops that loop. stop() stops and joins the
// vCPUs; finish() writes what the VM did (the DMA summary) into the timeline.
// Owns everything it holds; members are declared in build order and destroyed in reverse:
// vCPU threads joined, the virtio-iommu's endpoints back on the VM's IOAS and its domains
// gone, VFIO devices released and reset, DMA mappings and pins undone, MSI routes, legacy
// devices, guest RAM, the VM, KVM. Borrows the Timeline and the Sys (both outlive it).
// Main thread only (the devices it owns run on vCPU threads, as their classes document).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "pinless/base/fd.h"
#include "pinless/base/result.h"
#include "pinless/base/seccomp.h"
#include "pinless/base/sys.h"
#include "pinless/vmm/cli/config.h"
#include "pinless/vmm/event_loop.h"
#include "pinless/vmm/io_bus.h"
#include "pinless/vmm/kvm/kvm.h"
#include "pinless/vmm/kvm/vcpu.h"
#include "pinless/vmm/kvm/vcpu_loop.h"
#include "pinless/vmm/kvm/vm.h"
#include "pinless/vmm/kvm/vm_state.h"
#include "pinless/vmm/memory/guest_memory.h"
#include "pinless/vmm/timeline/timeline.h"
#include "builder_devices.h"
#include "builder_vfio.h"
#include "builder_viommu.h"

namespace pinless::vmm {

class MicroVm;

// Builds the VM described by `config` and returns it paused (builder.cpp). An error means
// pinless could not build it; everything built so far has been released.
[[nodiscard]] Result<std::unique_ptr<MicroVm>> build_microvm(const VmConfig& config, Timeline& timeline, Sys& sys);

class MicroVm {
 public:
  MicroVm(const MicroVm&) = delete;
  MicroVm& operator=(const MicroVm&) = delete;
  ~MicroVm();

  // Registers the VM's event sources with `loop` and starts the vCPUs, each of which installs
  // `vcpu_filter` on itself first. `loop` and `vcpu_filter` must outlive the vCPU threads
  // (call stop() before destroying them).
  [[nodiscard]] Status start(EventLoop& loop, const seccomp::Filter& vcpu_filter);
  // Stops the VM if it is still running, kicks the vCPUs out of KVM_RUN and joins them.
  // Idempotent.
  void stop();
  // After stop(): the "dma" timeline section and its log line.
  void finish();

  VmState& state() { return *state_; }

  // For the control API (MicroVmControl; event-loop thread). pause() parks every vCPU out of
  // KVM_RUN and returns whether they all were within `timeout`.
  bool pause(std::chrono::milliseconds timeout) { return threads_.pause(timeout); }
  void resume() { threads_.resume(); }
  bool paused() const { return threads_.paused(); }
  VcpuThreads::ExitTotals exits() const { return threads_.exits(); }
  // The ACPI power button (a GED event): a guest that handles it powers off.
  void press_power_button();
  const VmConfig& config() const { return config_; }
  const Timeline& timeline() const { return timeline_; }
  const GuestMemory& memory() const { return *memory_; }
  const VfioSetup* vfio() const { return vfio_.get(); }
  // vm.ram-region (VfioSetup::set_ram_region). A switch to fault that set fault mode up at
  // run time also puts the new fault queue on `loop`.
  [[nodiscard]] Status set_ram_region(uint64_t ram_offset, std::optional<bool> fault,
                                      std::optional<uint64_t> premap_pages, std::optional<iommu::WindowPolicy> window,
                                      EventLoop& loop);
  const ViommuSetup* viommu() const { return viommu_.get(); }

 private:
  friend Result<std::unique_ptr<MicroVm>> build_microvm(const VmConfig&, Timeline&, Sys&);
  MicroVm(const VmConfig& config, Timeline& timeline, Sys& sys)
      : config_(config), timeline_(timeline), sys_(sys) {}

  // Serves the VFIO DMA domain's fault queue on `loop`, once it exists (idempotent).
  [[nodiscard]] Status watch_faults(EventLoop& loop);

  const VmConfig config_;
  Timeline& timeline_;
  Sys& sys_;
  std::optional<Kvm> kvm_;
  std::optional<Vm> vm_;
  std::optional<GuestMemory> memory_;
  std::optional<VmState> state_;
  IoBus bus_;
  UniqueFd serial_out_;
  std::optional<LegacyDevices> devices_;
  std::unique_ptr<MsiRouter> msi_;  // every device's MSI routes (one KVM routing table)
  std::unique_ptr<VfioSetup> vfio_;
  std::unique_ptr<ViommuSetup> viommu_;  // --viommu; released before the VFIO devices
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  bool faults_watched_ = false;
  // Last: destroyed (vCPUs stopped and joined) before anything they use.
  VcpuThreads threads_;
};

}  // namespace pinless::vmm
