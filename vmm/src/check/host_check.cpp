#include "pinless/vmm/check/host_check.h"

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fmt/format.h"
#include "pinless/base/size.h"
#include "pinless/base/types.h"

namespace pinless::vmm::check {
namespace {

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

bool has(const std::vector<std::string>& v, const char* s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string rate_text(double per_s) {
  if (per_s >= 1e9) return fmt::format("{:.2f} G/s", per_s / 1e9);
  if (per_s >= 1e6) return fmt::format("{:.1f} M/s", per_s / 1e6);
  if (per_s >= 1e3) return fmt::format("{:.1f} k/s", per_s / 1e3);
  return fmt::format("{:.0f}/s", per_s);
}

// "0.98x" when near or above 1, "1/7400 of" when far below: the way people say it.
std::string ratio_text(double ratio) {
  if (ratio >= 0.1) return fmt::format("{:.2f}x the host's speed", ratio);
  return fmt::format("{:.0f}x slower than the host", 1.0 / std::max(ratio, 1e-12));
}

struct Builder {
  Report r;
  void add(std::string id, std::string title, Level level, std::string detail, std::string advice = {}) {
    r.items.push_back(Item{std::move(id), std::move(title), level, std::move(detail), std::move(advice)});
  }
};

// The module that runs this host's guests: kvm_pvm when loaded, else the one that matches the
// CPU's virtualisation flag (a kernel with KVM built in shows both kvm_intel and kvm_amd).
std::string vendor_module(const KvmFacts& k) {
  if (has(k.modules, "kvm_pvm")) return "kvm_pvm";
  if (k.hw_virt == "svm" && has(k.modules, "kvm_amd")) return "kvm_amd";
  if (k.hw_virt == "vmx" && has(k.modules, "kvm_intel")) return "kvm_intel";
  return k.modules.size() == 1 ? k.modules.front() : std::string();
}

// The KVM items; sets the verdict and its summary line.
void assess_kvm(const KvmFacts& k, Builder& b) {
  const std::string modules = k.modules.empty() ? "no known KVM module loaded" : join(k.modules);
  const std::string testbed = "run pinless inside the nested testbed (scripts/testbed run -- build/pinless run ...)";
  if (!k.device_present) {
    b.add("kvm.device", "KVM device", Level::kFail, k.device + " does not exist (" + modules + ")",
          "load kvm_intel or kvm_amd (and enable VT-x/AMD-V in firmware), or " + testbed);
    b.r.summary = "no " + k.device + " on this host";
    return;
  }
  if (k.open_errno != 0) {
    b.add("kvm.device", "KVM device", Level::kFail,
          k.device + ": cannot open it: " + std::strerror(k.open_errno),
          k.open_errno == EACCES || k.open_errno == EPERM
              ? "add this user to the group that owns " + k.device + " (usually kvm) or run as root"
              : std::string());
    b.r.summary = k.device + " cannot be opened: " + std::strerror(k.open_errno);
    return;
  }
  if (k.api_version >= 0 && k.api_version != 12) {
    b.add("kvm.device", "KVM device", Level::kFail,
          fmt::format("{}: API version {}, pinless needs 12", k.device, k.api_version),
          "use a Linux kernel with a standard KVM");
    b.r.summary = fmt::format("{} speaks KVM API {}, not 12", k.device, k.api_version);
    return;
  }
  b.add("kvm.device", "KVM device", Level::kPass, k.device + " opens, API version 12");

  // The module says what to expect; the measurement below decides.
  if (has(k.modules, "kvm_pvm")) {
    b.add("kvm.module", "KVM module", Level::kWarn,
          "loaded: " + modules + "; kvm_pvm (Pagetable-based Virtual Machine) runs guests without hardware "
                    "virtualisation support",
          "expect guest code to be emulated (see kvm.speed); on such a host, " + testbed);
  } else if ((k.hw_virt == "svm" && has(k.modules, "kvm_amd")) || (k.hw_virt == "vmx" && has(k.modules, "kvm_intel"))) {
    b.add("kvm.module", "KVM module", Level::kPass,
          vendor_module(k) + " on a CPU with " + k.hw_virt + " (hardware virtualisation; modules: " + modules + ")");
  } else {
    b.add("kvm.module", "KVM module", Level::kWarn, "loaded: " + modules, "the speed probe decides (kvm.speed)");
  }
  const std::string vendor = vendor_module(k);
  const std::string who = vendor.empty() ? k.device : k.device + " is " + vendor;
  if (!k.setup_error.empty()) {
    b.add("kvm.setup", "KVM features", Level::kFail, k.setup_error);
    b.r.summary = k.device + " lacks what pinless needs: " + k.setup_error;
    return;
  }
  if (!k.speed) {
    b.add("kvm.speed", "guest speed", Level::kFail,
          "the timed probe could not run a guest: " + (k.probe_error.empty() ? "not run" : k.probe_error),
          testbed);
    b.r.summary = k.device + " cannot run the probe guest: " + k.probe_error;
    return;
  }
  const SpeedFacts& s = *k.speed;
  double ratio = s.host_rate > 0 ? s.guest_rate / s.host_rate : 0;
  std::string detail = fmt::format("a dec/jnz loop ran {} in the guest ({:.0f} ms) vs {} on the host: {}",
                                   rate_text(s.guest_rate), s.guest_ms, rate_text(s.host_rate),
                                   ratio_text(ratio));
  if (ratio >= kMinSpeedRatio) {
    b.add("kvm.speed", "guest speed", Level::kPass, detail);
    b.r.kvm_usable = true;
    std::string dev = vendor.empty() ? k.device : k.device + " (" + vendor + ")";
    b.r.summary = fmt::format("{} runs guest code at {}", dev, ratio_text(ratio));
  } else {
    b.add("kvm.speed", "guest speed", Level::kFail,
          detail + fmt::format(" (pinless needs at least {:.1f}x)", kMinSpeedRatio),
          "a Linux guest will not boot in useful time here; " + testbed);
    b.r.summary = fmt::format("{}: guest code runs {}", who, ratio_text(ratio));
  }
}

void assess_iommu(const HostFacts& f, Builder& b) {
  if (f.iommus.empty()) {
    b.add("iommu.present", "IOMMU", Level::kWarn, "no IOMMU (/sys/class/iommu is empty)",
          "VFIO passthrough needs one: enable VT-d/AMD-Vi in firmware and boot with intel_iommu=on "
          "or amd_iommu=on");
  } else {
    b.add("iommu.present", "IOMMU", Level::kPass,
          fmt::format("{} ({} IOMMU groups)", join(f.iommus), f.iommu_groups));
  }
  if (f.dev_iommu) {
    b.add("iommu.iommufd", "iommufd", Level::kPass, "/dev/iommu present");
  } else {
    b.add("iommu.iommufd", "iommufd", Level::kWarn, "no /dev/iommu",
          "modprobe iommufd (kernel with CONFIG_IOMMUFD); without it pinless uses the VFIO type1 "
          "container and --ram-region dma=fault cannot fault");
  }
  if (f.vfio_container || f.vfio_cdevs > 0) {
    std::vector<std::string> parts;
    if (f.vfio_container) parts.push_back(fmt::format("type1 container, {} group(s)", f.vfio_groups));
    if (f.vfio_cdevs > 0) parts.push_back(fmt::format("{} device cdev(s) in /dev/vfio/devices", f.vfio_cdevs));
    b.add("iommu.vfio", "VFIO", Level::kPass, join(parts, "; "));
  } else {
    b.add("iommu.vfio", "VFIO", Level::kWarn, "no /dev/vfio/vfio and no /dev/vfio/devices",
          "modprobe vfio-pci, then bind a device to it (docs/vfio.md)");
  }
  bool unsafe = f.unsafe_interrupts_type1.value_or(false) || f.unsafe_interrupts_iommufd.value_or(false);
  if (f.irq_remapping.value_or(false)) {
    b.add("iommu.irq_remapping", "interrupt remapping", Level::kPass, "on (IR- interrupt chips)");
  } else if (unsafe) {
    b.add("iommu.irq_remapping", "interrupt remapping", Level::kWarn,
          "off; allow_unsafe_interrupts=Y lets VFIO assign devices anyway",
          "an assigned device can then forge MSIs; use interrupt remapping where you can");
  } else if (!f.iommus.empty()) {
    b.add("iommu.irq_remapping", "interrupt remapping", Level::kWarn,
          "off, and allow_unsafe_interrupts is not set: VFIO will refuse devices (EPERM)",
          "enable interrupt remapping, or set vfio_iommu_type1.allow_unsafe_interrupts=1 "
          "(and iommufd.allow_unsafe_interrupts=1)");
  } else {
    b.add("iommu.irq_remapping", "interrupt remapping", Level::kWarn, "off (no IOMMU)");
  }
  if (!f.pri_devices.empty()) {
    b.add("iommu.pri", "I/O page faults", Level::kPass,
          fmt::format("{} of {} PCI functions can raise page requests (PRI): {}", f.pri_devices.size(),
                      f.pci_devices, join(f.pri_devices)));
  } else if (f.pci_devices > 0 && !f.pci_config_readable) {
    b.add("iommu.pri", "I/O page faults", Level::kWarn,
          "unknown: PCI config space past the header is not readable", "run pinless check as root");
  } else {
    b.add("iommu.pri", "I/O page faults", Level::kWarn,
          fmt::format("none of {} PCI functions has a PRI capability", f.pci_devices),
          "--ram-region dma=fault cannot fault with these devices; use dma=pin or --dma-fallback=pin");
  }
}

void assess_memory(const HostFacts& f, Builder& b) {
  if (f.cap_ipc_lock || f.memlock_limit == UINT64_MAX) {
    b.add("mem.memlock", "pinning limit", Level::kPass,
          f.cap_ipc_lock ? "CAP_IPC_LOCK: no RLIMIT_MEMLOCK limit applies" : "RLIMIT_MEMLOCK unlimited");
  } else {
    b.add("mem.memlock", "pinning limit", Level::kWarn,
          "RLIMIT_MEMLOCK " + format_size(f.memlock_limit) + ": VFIO can pin at most that much guest RAM",
          "raise it to at least the guest's RAM (ulimit -l, or LimitMEMLOCK= in a systemd unit)");
  }
  if (f.hugepages_total > 0) {
    b.add("mem.hugepages", "huge pages", Level::kPass,
          fmt::format("{} x 2M reserved, {} free: --memory hugepages=on can back up to {}",
                      f.hugepages_total, f.hugepages_free, format_size(f.hugepages_free * 2 * kMiB)));
  } else {
    b.add("mem.hugepages", "huge pages", Level::kWarn, "no 2M huge pages reserved",
          "for --memory hugepages=on: echo N > /proc/sys/vm/nr_hugepages (N x 2M)");
  }
  if (f.thp_shmem.empty()) {
    b.add("mem.thp", "THP for guest RAM", Level::kWarn, "no transparent huge pages in this kernel",
          "--memory thp=on has no effect");
  } else if (f.thp_shmem == "never" || f.thp_shmem == "deny") {
    b.add("mem.thp", "THP for guest RAM", Level::kWarn,
          "shmem_enabled is [" + f.thp_shmem + "]: guest RAM (a memfd) gets no huge pages",
          "for --memory thp=on: echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled");
  } else {
    b.add("mem.thp", "THP for guest RAM", Level::kPass,
          "shmem_enabled is [" + f.thp_shmem + "]: --memory thp=on works");
  }
}

}  // namespace

const char* level_name(Level level) {
  switch (level) {
    case Level::kPass: return "PASS";
    case Level::kWarn: return "WARN";
    case Level::kFail: return "FAIL";
  }
  return "?";
}

Report assess(const HostFacts& facts) {
  Builder b;
  assess_kvm(facts.kvm, b);
  assess_iommu(facts, b);
  assess_memory(facts, b);
  return std::move(b.r);
}

std::string to_text(const Report& report) {
  std::ostringstream out;
  for (const auto& i : report.items) {
    out << fmt::format("{}  {:<20} {}\n", level_name(i.level), i.title, i.detail);
    if (!i.advice.empty() && i.level != Level::kPass) out << fmt::format("      {:<20} -> {}\n", "", i.advice);
  }
  out << (report.kvm_usable ? "verdict: pinless can run guests at speed here: "
                            : "verdict: pinless cannot run guests at speed here: ")
      << report.summary << "\n";
  return out.str();
}

std::string to_json(const Report& report, const HostFacts& f) {
  using nlohmann::json;
  json items = json::array();
  for (const auto& i : report.items) {
    items.push_back({{"id", i.id}, {"title", i.title}, {"level", level_name(i.level)},
                     {"detail", i.detail}, {"advice", i.advice}});
  }
  json kvm = {{"device", f.kvm.device},
              {"hw_virt", f.kvm.hw_virt},
              {"present", f.kvm.device_present},
              {"open_errno", f.kvm.open_errno},
              {"api_version", f.kvm.api_version},
              {"modules", f.kvm.modules},
              {"setup_error", f.kvm.setup_error},
              {"probe_error", f.kvm.probe_error}};
  if (f.kvm.speed) {
    const auto& s = *f.kvm.speed;
    kvm["speed"] = {{"guest_rate", s.guest_rate}, {"host_rate", s.host_rate},
                    {"ratio", s.host_rate > 0 ? s.guest_rate / s.host_rate : 0.0},
                    {"guest_ms", s.guest_ms}, {"host_ms", s.host_ms}, {"min_ratio", kMinSpeedRatio}};
  }
  auto opt = [](const std::optional<bool>& v) { return v ? json(*v) : json(nullptr); };
  json facts = {{"kvm", kvm},
                {"iommus", f.iommus},
                {"iommu_groups", f.iommu_groups},
                {"dev_iommu", f.dev_iommu},
                {"vfio_container", f.vfio_container},
                {"vfio_groups", f.vfio_groups},
                {"vfio_cdevs", f.vfio_cdevs},
                {"allow_unsafe_interrupts_type1", opt(f.unsafe_interrupts_type1)},
                {"allow_unsafe_interrupts_iommufd", opt(f.unsafe_interrupts_iommufd)},
                {"irq_remapping", opt(f.irq_remapping)},
                {"pri_devices", f.pri_devices},
                {"pci_devices", f.pci_devices},
                {"memlock_limit", f.memlock_limit == UINT64_MAX ? json("unlimited") : json(f.memlock_limit)},
                {"cap_ipc_lock", f.cap_ipc_lock},
                {"hugepages_2m_total", f.hugepages_total},
                {"hugepages_2m_free", f.hugepages_free},
                {"thp_shmem", f.thp_shmem},
                {"mem_total", f.mem_total}};
  json j = {{"kvm_usable", report.kvm_usable}, {"summary", report.summary}, {"checks", items}, {"facts", facts}};
  return j.dump(2) + "\n";
}

}  // namespace pinless::vmm::check
