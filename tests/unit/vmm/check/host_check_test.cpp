// pinless check: the judgement (assess) from made-up facts, the report formats, and the
// sysfs/procfs gathering (probe_host) against a made-up tree.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fakes/fake_sys.h"
#include "pinless/vmm/check/host_check.h"
#include "pinless/vmm/check/host_probe.h"

using namespace pinless;
using namespace pinless::vmm::check;

namespace {

HostFacts fast_amd_host() {
  HostFacts f;
  f.kvm.device_present = true;
  f.kvm.api_version = 12;
  f.kvm.modules = {"kvm_amd"};
  f.kvm.hw_virt = "svm";
  f.kvm.speed = SpeedFacts{2.0e9, 2.1e9, 30, 30};
  f.iommus = {"ivhd0"};
  f.iommu_groups = 12;
  f.dev_iommu = true;
  f.vfio_container = true;
  f.vfio_groups = 1;
  f.irq_remapping = true;
  f.pci_devices = 20;
  f.pci_config_readable = true;
  f.pri_devices = {"0000:01:00.0"};
  f.memlock_limit = UINT64_MAX;
  f.hugepages_total = 512;
  f.hugepages_free = 500;
  f.thp_shmem = "advise";
  return f;
}

const Item& item(const Report& r, const std::string& id) {
  for (const auto& i : r.items) {
    if (i.id == id) return i;
  }
  FAIL("no item " << id);
  static Item none;
  return none;
}

}  // namespace

TEST_CASE("check: hardware KVM at full speed is usable, exit 0") {
  Report r = assess(fast_amd_host());
  CHECK(r.kvm_usable);
  CHECK(exit_code(r) == 0);
  CHECK(item(r, "kvm.speed").level == Level::kPass);
  CHECK(item(r, "kvm.module").level == Level::kPass);
  CHECK(r.summary == "/dev/kvm (kvm_amd) runs guest code at 0.95x the host's speed");
  for (const auto& i : r.items) CHECK_MESSAGE(i.level == Level::kPass, i.id);
}

TEST_CASE("check: kvm_pvm's emulated guest code is not usable, and the summary says why") {
  HostFacts f = fast_amd_host();
  f.kvm.modules = {"kvm_pvm"};
  f.kvm.hw_virt = "";
  f.kvm.speed = SpeedFacts{0.6e6, 4242e6, 31, 30};  // the figures measured on our machines
  Report r = assess(f);
  CHECK_FALSE(r.kvm_usable);
  CHECK(exit_code(r) == 1);
  CHECK(item(r, "kvm.speed").level == Level::kFail);
  CHECK(item(r, "kvm.module").level == Level::kWarn);
  CHECK(r.summary == "/dev/kvm is kvm_pvm: guest code runs 7070x slower than the host");
  CHECK(item(r, "kvm.speed").advice.find("scripts/testbed") != std::string::npos);
}

TEST_CASE("check: with KVM built in, the CPU flag names the module that runs guests") {
  HostFacts f = fast_amd_host();
  f.kvm.modules = {"kvm_intel", "kvm_amd"};
  Report r = assess(f);
  CHECK(r.summary == "/dev/kvm (kvm_amd) runs guest code at 0.95x the host's speed");
  CHECK(item(r, "kvm.module").level == Level::kPass);
  f.kvm.hw_virt = "vmx";
  CHECK(assess(f).summary == "/dev/kvm (kvm_intel) runs guest code at 0.95x the host's speed");
  f.kvm.hw_virt = "";  // neither flag: the module cannot be hardware-assisted
  CHECK(item(assess(f), "kvm.module").level == Level::kWarn);
}

TEST_CASE("check: the speed threshold is the ratio, whatever the module") {
  HostFacts f = fast_amd_host();
  f.kvm.modules = {};
  f.kvm.speed = SpeedFacts{kMinSpeedRatio * 1e9 * 1.01, 1e9, 30, 30};
  CHECK(assess(f).kvm_usable);
  f.kvm.speed = SpeedFacts{kMinSpeedRatio * 1e9 * 0.99, 1e9, 30, 30};
  CHECK_FALSE(assess(f).kvm_usable);
  // A host rate of zero (no measurement) never counts as fast.
  f.kvm.speed = SpeedFacts{1e9, 0, 30, 0};
  CHECK_FALSE(assess(f).kvm_usable);
}

TEST_CASE("check: no device, no access, wrong API, missing features, failed probe") {
  HostFacts f = fast_amd_host();
  f.kvm.device_present = false;
  f.kvm.modules = {};
  Report r = assess(f);
  CHECK_FALSE(r.kvm_usable);
  CHECK(r.summary == "no /dev/kvm on this host");
  CHECK(item(r, "kvm.device").level == Level::kFail);

  f = fast_amd_host();
  f.kvm.open_errno = EACCES;
  r = assess(f);
  CHECK_FALSE(r.kvm_usable);
  CHECK(item(r, "kvm.device").advice.find("group") != std::string::npos);
  CHECK(r.summary.find("Permission denied") != std::string::npos);

  f = fast_amd_host();
  f.kvm.api_version = 11;
  r = assess(f);
  CHECK_FALSE(r.kvm_usable);
  CHECK(r.summary == "/dev/kvm speaks KVM API 11, not 12");

  f = fast_amd_host();
  f.kvm.setup_error = "host KVM lacks KVM_CAP_IRQFD";
  r = assess(f);
  CHECK_FALSE(r.kvm_usable);
  CHECK(item(r, "kvm.setup").level == Level::kFail);

  f = fast_amd_host();
  f.kvm.speed.reset();
  f.kvm.probe_error = "KVM_RUN: Invalid argument";
  r = assess(f);
  CHECK_FALSE(r.kvm_usable);
  CHECK(item(r, "kvm.speed").detail.find("Invalid argument") != std::string::npos);
}

TEST_CASE("check: IOMMU, iommufd, VFIO and interrupt remapping warnings name the fix") {
  HostFacts f = fast_amd_host();
  f.iommus.clear();
  f.dev_iommu = false;
  f.vfio_container = false;
  f.irq_remapping = false;
  Report r = assess(f);
  CHECK(r.kvm_usable);  // none of these stops a guest from running
  CHECK(exit_code(r) == 0);
  CHECK(item(r, "iommu.present").level == Level::kWarn);
  CHECK(item(r, "iommu.present").advice.find("intel_iommu=on") != std::string::npos);
  CHECK(item(r, "iommu.iommufd").advice.find("modprobe iommufd") != std::string::npos);
  CHECK(item(r, "iommu.vfio").advice.find("vfio-pci") != std::string::npos);

  f = fast_amd_host();
  f.irq_remapping = false;
  f.unsafe_interrupts_type1 = false;
  r = assess(f);
  CHECK(item(r, "iommu.irq_remapping").level == Level::kWarn);
  CHECK(item(r, "iommu.irq_remapping").detail.find("EPERM") != std::string::npos);
  f.unsafe_interrupts_iommufd = true;
  r = assess(f);
  CHECK(item(r, "iommu.irq_remapping").detail.find("allow_unsafe_interrupts=Y") != std::string::npos);
}

TEST_CASE("check: page requests, pinning limit, huge pages and shmem THP") {
  HostFacts f = fast_amd_host();
  f.pri_devices.clear();
  Report r = assess(f);
  CHECK(item(r, "iommu.pri").level == Level::kWarn);  // no PRI device listed
  f.pri_devices = {"0000:01:00.0"};
  r = assess(f);
  CHECK(item(r, "iommu.pri").level == Level::kPass);
  CHECK(item(r, "iommu.pri").detail.find("0000:01:00.0") != std::string::npos);
  f.pri_devices.clear();
  f.pci_config_readable = false;  // not root: only the 64-byte header can be read
  r = assess(f);
  CHECK(item(r, "iommu.pri").detail.find("unknown") != std::string::npos);

  f = fast_amd_host();
  f.memlock_limit = 8 * kMiB;
  f.cap_ipc_lock = false;
  r = assess(f);
  CHECK(item(r, "mem.memlock").level == Level::kWarn);
  CHECK(item(r, "mem.memlock").detail.find("8M") != std::string::npos);
  f.cap_ipc_lock = true;
  CHECK(item(assess(f), "mem.memlock").level == Level::kPass);

  f = fast_amd_host();
  f.hugepages_total = 0;
  f.thp_shmem = "never";
  r = assess(f);
  CHECK(item(r, "mem.hugepages").level == Level::kWarn);
  CHECK(item(r, "mem.thp").level == Level::kWarn);
  CHECK(item(r, "mem.thp").advice.find("echo advise") != std::string::npos);
  f.thp_shmem = "within_size";
  CHECK(item(assess(f), "mem.thp").level == Level::kPass);
}

TEST_CASE("check: text and JSON reports carry every item and the verdict") {
  HostFacts f = fast_amd_host();
  f.kvm.modules = {"kvm_pvm"};
  f.kvm.speed = SpeedFacts{0.6e6, 4242e6, 31, 30};
  Report r = assess(f);
  std::string text = to_text(r);
  CHECK(text.find("FAIL  guest speed") != std::string::npos);
  CHECK(text.find("verdict: pinless cannot run guests at speed here: /dev/kvm is kvm_pvm") != std::string::npos);
  auto j = nlohmann::json::parse(to_json(r, f));
  CHECK(j["kvm_usable"] == false);
  CHECK(j["summary"] == r.summary);
  CHECK(j["checks"].size() == r.items.size());
  CHECK(j["facts"]["kvm"]["modules"][0] == "kvm_pvm");
  CHECK(j["facts"]["kvm"]["speed"]["ratio"].get<double>() < kMinSpeedRatio);
  CHECK(j["facts"]["memlock_limit"] == "unlimited");
}

TEST_CASE("check: selected_word picks the bracketed choice") {
  CHECK(selected_word("always within_size advise [never] deny force\n") == "never");
  CHECK(selected_word("[always] madvise never") == "always");
  CHECK(selected_word("advise\n") == "advise");
}

namespace {
// A made-up root: sysfs, procfs and /dev as probe_host reads them.
struct FakeRoot {
  std::filesystem::path dir;
  FakeRoot() {
    char tmpl[] = "/tmp/pinless-check-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
  }
  ~FakeRoot() { std::filesystem::remove_all(dir); }
  void file(const std::string& rel, const std::string& text) {
    auto p = dir / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
  }
  void mkdir(const std::string& rel) { std::filesystem::create_directories(dir / rel); }
};

// 4 KiB of config space with AER at 0x100 -> (next) PRI at 0x140, or no PRI.
std::string config_space(bool pri) {
  std::string c(4096, '\0');
  auto put = [&](size_t off, uint32_t v) { std::memcpy(c.data() + off, &v, 4); };
  put(0, 0x11e81234);
  put(0x100, 0x0001 | (1u << 16) | (0x140u << 20));  // AER, version 1, next 0x140
  put(0x140, (pri ? 0x13u : 0x0bu) | (1u << 16));    // PRI (or vendor-specific), last
  return c;
}
}  // namespace

TEST_CASE("check: probe_host reads IOMMU, VFIO, PRI and memory facts from the tree") {
  FakeRoot root;
  root.mkdir("sys/module/kvm_amd");
  root.mkdir("sys/class/iommu/dmar0");
  root.mkdir("sys/class/iommu/iommufd_selftest_iommu.0");  // the mock IOMMU: not counted
  root.file("proc/cpuinfo", "processor\t: 0\nflags\t\t: fpu vme svm lm\n");
  root.mkdir("sys/kernel/iommu_groups/0");
  root.mkdir("sys/kernel/iommu_groups/1");
  root.file("dev/iommu", "");
  root.file("dev/vfio/vfio", "");
  root.file("dev/vfio/7", "");
  root.file("dev/vfio/devices/vfio0", "");
  root.file("dev/vfio/devices/vfio1", "");
  root.file("sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts", "Y\n");
  root.file("sys/module/iommufd/parameters/allow_unsafe_interrupts", "N\n");
  root.file("proc/interrupts", "  24:  1  IR-PCI-MSI 512000-edge  ahci\n");
  root.file("sys/bus/pci/devices/0000:00:03.0/config", config_space(true));
  root.file("sys/bus/pci/devices/0000:00:04.0/config", config_space(false));
  root.file("sys/bus/pci/devices/0000:00:05.0/config", std::string(64, '\xff'));
  root.file("proc/self/status", "Name:\tpinless\nCapEff:\t0000000000004000\n");
  root.file("proc/meminfo", "MemTotal:       24576000 kB\n");
  root.file("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "64\n");
  root.file("sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "60\n");
  root.file("sys/kernel/mm/transparent_hugepage/shmem_enabled", "always within_size [advise] never deny force\n");

  testing::FakeSys sys;
  ProbeOptions opt;
  opt.root = root.dir.string();
  opt.kvm_device = (root.dir / "dev/kvm").string();  // absent
  opt.run_kvm = false;
  HostFacts f = probe_host(sys, opt);
  CHECK_FALSE(f.kvm.device_present);
  CHECK(f.kvm.modules == std::vector<std::string>{"kvm_amd"});
  CHECK(f.kvm.hw_virt == "svm");
  CHECK(f.iommus == std::vector<std::string>{"dmar0"});
  CHECK(f.iommu_groups == 2);
  CHECK(f.dev_iommu);
  CHECK(f.vfio_container);
  CHECK(f.vfio_groups == 1);
  CHECK(f.vfio_cdevs == 2);
  CHECK(f.unsafe_interrupts_type1 == std::optional<bool>(true));
  CHECK(f.unsafe_interrupts_iommufd == std::optional<bool>(false));
  CHECK(f.irq_remapping == std::optional<bool>(true));
  CHECK(f.pci_devices == 3);
  CHECK(f.pci_config_readable);
  CHECK(f.pri_devices == std::vector<std::string>{"0000:00:03.0"});
  CHECK(f.cap_ipc_lock);
  CHECK(f.mem_total == 24576000ull * 1024);
  CHECK(f.hugepages_total == 64);
  CHECK(f.hugepages_free == 60);
  CHECK(f.thp_shmem == "advise");

  Report r = assess(f);
  CHECK_FALSE(r.kvm_usable);
  CHECK(r.summary.find("no ") == 0);
}

TEST_CASE("check: conventional PCI functions (256 bytes) are readable and have no PRI") {
  FakeRoot root;
  root.file("sys/bus/pci/devices/0000:00:03.0/config", std::string(256, '\0'));
  testing::FakeSys sys;
  ProbeOptions opt;
  opt.root = root.dir.string();
  opt.kvm_device = (root.dir / "dev/kvm").string();
  opt.run_kvm = false;
  HostFacts f = probe_host(sys, opt);
  CHECK(f.pci_devices == 1);
  CHECK(f.pci_config_readable);
  CHECK(f.pri_devices.empty());
  CHECK(item(assess(f), "iommu.pri").detail.find("none of 1") != std::string::npos);
  // Non-root: sysfs gives only the 64-byte header.
  root.file("sys/bus/pci/devices/0000:00:03.0/config", std::string(64, '\0'));
  CHECK_FALSE(probe_host(sys, opt).pci_config_readable);
}

TEST_CASE("check: probe_host on an empty tree reports nothing present") {
  FakeRoot root;
  testing::FakeSys sys;
  ProbeOptions opt;
  opt.root = root.dir.string();
  opt.kvm_device = (root.dir / "dev/kvm").string();
  opt.run_kvm = false;
  HostFacts f = probe_host(sys, opt);
  CHECK(f.iommus.empty());
  CHECK_FALSE(f.dev_iommu);
  CHECK_FALSE(f.vfio_container);
  CHECK(f.pci_devices == 0);
  CHECK_FALSE(f.irq_remapping.has_value());
  CHECK_FALSE(f.unsafe_interrupts_type1.has_value());
  CHECK(f.thp_shmem.empty());
}
