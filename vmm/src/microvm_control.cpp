#include "microvm_control.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fmt/format.h>

#include "pinless/base/log.h"
#include "pinless/iommu/backend_select.h"
#include "pinless/vmm/kvm/exit.h"

namespace pinless::vmm {
namespace {

std::string hex(uint64_t v) { return fmt::format("{:#x}", v); }

const char* serial_name(VmConfig::Serial s) {
  switch (s) {
    case VmConfig::Serial::kStdio: return "stdio";
    case VmConfig::Serial::kFile: return "file";
    case VmConfig::Serial::kOff: return "off";
  }
  return "?";
}

// "KVM_EXIT_IO" -> "io".
std::string short_exit_name(uint32_t reason) {
  std::string n = exit_reason_name(reason);
  if (n.rfind("KVM_EXIT_", 0) == 0) n = n.substr(9);
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return n;
}

api::Json config_json(const VmConfig& c) {
  api::Json devices = api::Json::array();
  for (const auto& d : c.vfio_devices) devices.push_back(d.path.empty() ? d.host : d.path);
  api::Json regions = api::Json::array();
  for (const auto& r : c.dma.regions) {
    api::Json o{{"offset", hex(r.offset)}, {"size", r.size}, {"dma", r.fault ? "fault" : "pin"}};
    if (r.fault) o["premap"] = r.fault_policy.premap_pages;
    regions.push_back(std::move(o));
  }
  return api::Json{{"kernel", c.kernel},
                   {"initrd", c.initrd.empty() ? api::Json(nullptr) : api::Json(c.initrd)},
                   {"cmdline", c.cmdline},
                   {"cpus", c.cpus},
                   {"memory", {{"size", c.memory.size}, {"hugepages", c.memory.hugepages}, {"thp", c.memory.thp}}},
                   {"serial", serial_name(c.serial)},
                   {"vfio_devices", std::move(devices)},
                   {"viommu", c.viommu},
                   {"ram_regions", std::move(regions)},
                   {"dma_fallback", c.dma.fallback_pin ? "pin" : "fail"},
                   {"pin_limit", c.dma.pin_limit},
                   {"exit_status", c.exit_status == ExitStatusMode::kVmm ? "vmm" : "guest"},
                   {"seccomp", seccomp::to_string(c.seccomp)}};
}

}  // namespace

std::string MicroVmControl::state() const {
  if (vm_.state().stopping()) return "stopping";
  if (shutting_down_) return "shutting down";
  return vm_.paused() ? "paused" : "running";
}

api::Json MicroVmControl::info() const {
  const VmConfig& c = vm_.config();
  api::Json j;
  j["pid"] = ::getpid();
  j["state"] = state();
  j["vcpus"] = c.cpus;
  j["config"] = config_json(c);
  api::Json mem = api::Json::array();
  for (const auto& r : vm_.memory().regions()) mem.push_back({{"gpa", hex(r.gpa.start.value())}, {"size", r.gpa.size}});
  j["memory_regions"] = std::move(mem);
  // Guest RAM as the assigned devices see it: each region's DMA policy (none without devices).
  api::Json dma = vm_.vfio() ? vm_.vfio()->dma_summary() : api::Json(nullptr);
  j["dma_regions"] = dma.is_null() ? api::Json::array() : dma["regions"];
  api::Json devices = vm_.vfio() ? vm_.vfio()->devices_json() : api::Json::array();
  if (vm_.viommu() != nullptr) {
    for (auto& d : devices) d["domain"] = "virtio-iommu";  // every device on bus 0 sits behind it
    devices.push_back({{"bdf", fmt::format("00:{:02x}.0", ViommuSetup::kSlot)}, {"kind", "virtio-iommu"}});
  }
  j["devices"] = std::move(devices);
  return j;
}

api::Json MicroVmControl::counters() const {
  api::Json j;
  j["state"] = state();
  auto exits = vm_.exits();
  api::Json by_reason = api::Json::object();
  uint64_t total = 0;
  for (uint32_t r = 0; r < exits.by_reason.size(); ++r) {
    if (exits.by_reason[r] == 0) continue;
    by_reason[short_exit_name(r)] = exits.by_reason[r];
    total += exits.by_reason[r];
  }
  if (exits.other != 0) by_reason["other"] = exits.other;
  j["vm_exits"] = {{"total", total + exits.other}, {"by_reason", std::move(by_reason)},
                   {"kvm_run_interrupted", exits.interrupted}};
  j["dma"] = vm_.vfio() ? vm_.vfio()->dma_summary() : api::Json(nullptr);
  j["viommu"] = vm_.viommu() ? vm_.viommu()->summary() : api::Json(nullptr);
  j["api"] = server_ ? api::to_json(server_->stats()) : api::Json(nullptr);
  return j;
}

std::string MicroVmControl::timeline_json() const { return vm_.timeline().to_json(); }

Status MicroVmControl::pause() {
  if (vm_.state().stopping()) return fail("vm.pause", EBUSY, "the VM is stopping");
  if (vm_.paused()) return {};
  if (!vm_.pause(kPauseWait)) {
    return fail("vm.pause", ETIMEDOUT,
                fmt::format("not every vCPU left KVM_RUN within {} ms; they park as soon as they do", kPauseWait.count()),
                "ask vm.info for the state, or vm.resume");
  }
  logger("api")->info("vm.pause: every vCPU parked");
  return {};
}

Status MicroVmControl::resume() {
  if (vm_.state().stopping()) return fail("vm.resume", EBUSY, "the VM is stopping");
  if (!vm_.paused()) return {};
  vm_.resume();
  logger("api")->info("vm.resume: vCPUs running");
  return {};
}

Status MicroVmControl::shutdown(uint64_t timeout_ms) {
  if (vm_.state().stopping()) return fail("vm.shutdown", EBUSY, "the VM is stopping already");
  if (shutting_down_) return fail("vm.shutdown", EALREADY, "the power button was pressed already", "use vm.stop to stop it now");
  // A paused guest cannot react to the button.
  if (vm_.paused()) vm_.resume();
  shutting_down_ = true;
  vm_.press_power_button();
  loop_.after(std::chrono::milliseconds(timeout_ms), [this, timeout_ms] {
    if (vm_.state().stopping()) return;
    logger("api")->warn("vm.shutdown: the guest did not power off within {} s; stopping it", timeout_ms / 1000);
    vm_.state().stopped(fmt::format("vm.shutdown: the guest did not power off within {} s; VM stopped", timeout_ms / 1000));
  });
  logger("api")->info("vm.shutdown: power button pressed; stopping the VM in {} s unless the guest powers off", timeout_ms / 1000);
  return {};
}

Status MicroVmControl::set_ram_region(const RamRegionChange& change) {
  if (vm_.state().stopping()) return fail("vm.ram-region", EBUSY, "the VM is stopping");
  std::optional<iommu::WindowPolicy> window;
  if (change.window) window = PINLESS_TRY(iommu::parse_window_policy(*change.window));
  std::optional<bool> fault;
  if (change.dma) fault = *change.dma == "fault";
  if (fault && vm_.viommu() != nullptr) {
    return fail("vm.ram-region", ENOTSUP, "--viommu",
                "the guest's IOMMU domains are copied from pinned guest RAM; a region cannot switch between pin and "
                "fault behind the virtio-iommu");
  }
  PINLESS_TRY_VOID(vm_.set_ram_region(change.offset, fault, change.premap_pages, window, loop_));
  logger("api")->info("vm.ram-region: RAM offset {:#x}: dma {}, premap {}, window {} from now on", change.offset,
                      change.dma.value_or("as before"),
                      change.premap_pages ? std::to_string(*change.premap_pages) : "as before",
                      change.window.value_or("as before"));
  return {};
}

Status MicroVmControl::stop() {
  if (vm_.state().stopping()) return {};
  vm_.state().stopped("stopped through the API (vm.stop)");
  return {};
}

}  // namespace pinless::vmm
