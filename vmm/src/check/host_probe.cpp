#include "pinless/vmm/check/host_probe.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <span>
#include <sstream>

#include "pinless/pci/capabilities.h"
#include "pinless/vmm/check/kvm_speed.h"
#include "pinless/vmm/kvm/kvm.h"

namespace pinless::vmm::check {
namespace {

class Paths {
 public:
  explicit Paths(std::string root) : root_(std::move(root)) {
    while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
    if (root_ == "/") root_.clear();
  }
  std::string operator()(const std::string& abs) const { return root_ + abs; }

 private:
  std::string root_;
};

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

// Entries of a directory (no "." / ".."), sorted; empty when it does not exist.
std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) out.emplace_back(e->d_name);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<bool> read_bool_param(const std::string& path) {
  auto t = read_text(path);
  if (!t) return std::nullopt;
  std::string v = trim(*t);
  return v == "Y" || v == "1";
}

uint64_t read_u64(const std::string& path) {
  auto t = read_text(path);
  if (!t) return 0;
  return std::strtoull(trim(*t).c_str(), nullptr, 10);
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Sets *readable when more than the 64-byte header could be read (root); a conventional PCI
// function has 256 bytes and no extended capabilities at all.
bool has_pri(const std::string& config, bool* readable) {
  std::ifstream in(config, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() > 64) *readable = true;
  // A short read (not root: 64 bytes; conventional PCI: 256) ends the walk at 0x100.
  std::span<const uint8_t> space(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return pci::find_ext_capability(pci::read32_from(space), pci::kExtCapPri).has_value();
}

void probe_kvm(Sys& sys, const ProbeOptions& opt, const Paths& at, KvmFacts* k) {
  k->device = opt.kvm_device;
  for (const char* m : {"kvm_intel", "kvm_amd", "kvm_pvm", "kvm_hv"}) {
    if (exists(at(std::string("/sys/module/") + m))) k->modules.emplace_back(m);
  }
  if (auto cpu = read_text(at("/proc/cpuinfo"))) {
    std::istringstream words(*cpu);
    std::string w;
    while (words >> w && k->hw_virt.empty()) {
      if (w == "vmx" || w == "svm") k->hw_virt = w;
    }
  }
  k->device_present = exists(opt.kvm_device);
  if (!k->device_present || !opt.run_kvm) return;
  int fd = sys.open(opt.kvm_device.c_str(), O_RDWR, 0);
  if (fd < 0) {
    k->open_errno = -fd;
    return;
  }
  {
    UniqueFd kvm_fd(sys, fd);  // closed before Kvm::open opens the device again
    k->api_version = sys.ioctl_int(kvm_fd.get(), KVM_GET_API_VERSION, 0);
  }
  auto kvm = Kvm::open(sys, opt.kvm_device.c_str());
  if (!kvm) {
    k->setup_error = kvm.error().message();
    return;
  }
  auto speed = measure_kvm_speed(*kvm, opt.budget_ms);
  if (speed) {
    k->speed = *speed;
  } else {
    k->probe_error = speed.error().message();
  }
}

}  // namespace

std::string selected_word(const std::string& text) {
  auto l = text.find('[');
  auto r = text.find(']', l == std::string::npos ? 0 : l);
  if (l == std::string::npos || r == std::string::npos) return trim(text);
  return text.substr(l + 1, r - l - 1);
}

HostFacts probe_host(Sys& sys, const ProbeOptions& opt) {
  Paths at(opt.root);
  HostFacts f;
  probe_kvm(sys, opt, at, &f.kvm);

  for (auto& name : list_dir(at("/sys/class/iommu"))) {
    if (name.rfind("iommufd_selftest", 0) != 0) f.iommus.push_back(std::move(name));
  }
  f.iommu_groups = int(list_dir(at("/sys/kernel/iommu_groups")).size());
  f.dev_iommu = exists(at("/dev/iommu"));
  f.vfio_container = exists(at("/dev/vfio/vfio"));
  for (const auto& e : list_dir(at("/dev/vfio"))) f.vfio_groups += all_digits(e) ? 1 : 0;
  for (const auto& e : list_dir(at("/dev/vfio/devices"))) f.vfio_cdevs += e.rfind("vfio", 0) == 0 ? 1 : 0;
  f.unsafe_interrupts_type1 = read_bool_param(at("/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts"));
  f.unsafe_interrupts_iommufd = read_bool_param(at("/sys/module/iommufd/parameters/allow_unsafe_interrupts"));
  if (auto irqs = read_text(at("/proc/interrupts"))) {
    // Interrupt chips behind a remapping unit are named IR-IO-APIC, IR-PCI-MSI, ...
    f.irq_remapping = irqs->find("IR-") != std::string::npos;
  }

  for (const auto& dev : list_dir(at("/sys/bus/pci/devices"))) {
    ++f.pci_devices;
    bool readable = false;
    if (has_pri(at("/sys/bus/pci/devices/" + dev + "/config"), &readable)) f.pri_devices.push_back(dev);
    f.pci_config_readable = f.pci_config_readable || readable;
  }

  rlimit rl{};
  if (::getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
    f.memlock_limit = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : uint64_t(rl.rlim_cur);
  }
  if (auto st = read_text(at("/proc/self/status"))) {
    auto pos = st->find("CapEff:");
    if (pos != std::string::npos) {
      uint64_t caps = std::strtoull(st->c_str() + pos + 7, nullptr, 16);
      f.cap_ipc_lock = (caps >> 14) & 1;  // CAP_IPC_LOCK = 14
    }
  }
  if (auto mi = read_text(at("/proc/meminfo"))) {
    auto pos = mi->find("MemTotal:");
    if (pos != std::string::npos) f.mem_total = std::strtoull(mi->c_str() + pos + 9, nullptr, 10) * 1024;
  }
  std::string hp = at("/sys/kernel/mm/hugepages/hugepages-2048kB/");
  f.hugepages_total = read_u64(hp + "nr_hugepages");
  f.hugepages_free = read_u64(hp + "free_hugepages");
  if (auto thp = read_text(at("/sys/kernel/mm/transparent_hugepage/shmem_enabled"))) {
    f.thp_shmem = selected_word(*thp);
  }
  return f;
}

}  // namespace pinless::vmm::check
