#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "pinless/vfio/sysfs.h"

using namespace pinless::vfio;
namespace fs = std::filesystem;

namespace {
struct Tree {
  fs::path root;
  Tree() {
    char tmpl[] = "/tmp/pinless-sysfs-XXXXXX";
    root = ::mkdtemp(tmpl);
    fs::create_directories(root / "bus/pci/devices");
    fs::create_directories(root / "bus/pci/drivers/vfio-pci");
    fs::create_directories(root / "bus/pci/drivers/edu");
    fs::create_directories(root / "kernel/iommu_groups/5");
  }
  ~Tree() { fs::remove_all(root); }
  fs::path device(const std::string& bdf, const std::string& driver, bool group, bool cdev) {
    fs::path d = root / "bus/pci/devices" / bdf;
    fs::create_directories(d);
    if (!driver.empty()) fs::create_directory_symlink(root / "bus/pci/drivers" / driver, d / "driver");
    if (group) fs::create_directory_symlink(root / "kernel/iommu_groups/5", d / "iommu_group");
    if (cdev) fs::create_directories(d / "vfio-dev/vfio3");
    if (group) join_group(bdf, 5);
    return d;
  }
  void join_group(const std::string& bdf, int group) {
    fs::path g = root / "kernel/iommu_groups" / std::to_string(group) / "devices";
    fs::create_directories(g);
    fs::create_directory_symlink(root / "bus/pci/devices" / bdf, g / bdf);
  }
};
}  // namespace

TEST_CASE("sysfs: BDFs are normalised and checked") {
  CHECK(normalize_bdf("00:03.0").value() == "0000:00:03.0");
  CHECK(normalize_bdf("0000:0A:1f.7").value() == "0000:0a:1f.7");
  CHECK_FALSE(normalize_bdf("0000:00:20.0"));  // device 32
  CHECK_FALSE(normalize_bdf("0000:00:03.8"));
  CHECK_FALSE(normalize_bdf("garbage"));
  CHECK_FALSE(normalize_bdf(""));
}

TEST_CASE("sysfs: a bound device with group and cdev is located") {
  Tree t;
  t.device("0000:00:03.0", "vfio-pci", true, true);
  auto loc = locate_device("00:03.0", t.root.string(), "/dev");
  REQUIRE(loc);
  CHECK(loc->group == 5);
  CHECK(loc->cdev == "/dev/vfio/devices/vfio3");
  CHECK(loc->driver == "vfio-pci");
}

TEST_CASE("sysfs: the errors say what to do") {
  Tree t;
  auto missing = locate_device("0000:00:09.0", t.root.string());
  REQUIRE_FALSE(missing);
  CHECK(missing.error().err() == ENOENT);
  CHECK(missing.error().message().find("no such PCI device") != std::string::npos);

  t.device("0000:00:04.0", "edu", true, false);
  auto bound = locate_device("0000:00:04.0", t.root.string());
  REQUIRE_FALSE(bound);
  CHECK(bound.error().err() == ENODEV);
  const std::string msg = bound.error().message();
  CHECK(msg.find("driver edu") != std::string::npos);
  CHECK(msg.find("echo vfio-pci > /sys/bus/pci/devices/0000:00:04.0/driver_override; "
                 "echo 0000:00:04.0 > /sys/bus/pci/drivers_probe") != std::string::npos);

  t.device("0000:00:05.0", "", true, false);
  auto unbound = locate_device("0000:00:05.0", t.root.string());
  REQUIRE_FALSE(unbound);
  CHECK(unbound.error().message().find("no driver") != std::string::npos);

  // Other devices have groups, this one not: outside the IOMMU's scope.
  t.device("0000:00:06.0", "vfio-pci", false, false);
  auto no_group = locate_device("0000:00:06.0", t.root.string());
  REQUIRE_FALSE(no_group);
  CHECK(no_group.error().err() == ENXIO);
  CHECK(no_group.error().message().find("outside every IOMMU's scope") != std::string::npos);
  CHECK(no_group.error().message().find("intel_iommu=on") != std::string::npos);

  // Without a cdev the type1 path still works.
  t.device("0000:00:07.0", "vfio-pci", true, false);
  auto old = locate_device("0000:00:07.0", t.root.string());
  REQUIRE(old);
  CHECK(old->cdev.empty());
}

TEST_CASE("sysfs: without any IOMMU the error names the IOMMU, not the driver") {
  // What a host with VT-d/AMD-Vi off looks like: no groups at all, and vfio-pci failed to
  // bind (driver_override set, no driver), so the driver is not the cause to report.
  Tree t;
  fs::remove_all(t.root / "kernel/iommu_groups/5");
  t.device("0000:00:03.0", "", false, false);
  auto r = locate_device("0000:00:03.0", t.root.string());
  REQUIRE_FALSE(r);
  CHECK(r.error().err() == ENXIO);
  const std::string msg = r.error().message();
  CHECK(msg.find("0000:00:03.0 has no IOMMU group: this host has no IOMMU enabled") != std::string::npos);
  CHECK(msg.find("firmware (BIOS/UEFI)") != std::string::npos);
  CHECK(msg.find("intel_iommu=on") != std::string::npos);
  CHECK(msg.find("not bound to vfio-pci") == std::string::npos);
  // Same with a host driver bound: the IOMMU is still the first thing to fix.
  t.device("0000:00:04.0", "edu", false, false);
  CHECK(locate_device("0000:00:04.0", t.root.string()).error().err() == ENXIO);
}

TEST_CASE("sysfs: group members and the ones that block passthrough") {
  Tree t;
  fs::create_directories(t.root / "bus/pci/drivers/e1000e");
  fs::create_directories(t.root / "bus/pci/drivers/pcieport");
  fs::create_directories(t.root / "bus/pci/drivers/pci-stub");
  fs::create_directories(t.root / "bus/pci/drivers/mlx5_vfio_pci");
  t.device("0000:00:03.0", "vfio-pci", true, true);
  t.device("0000:00:04.0", "e1000e", true, false);
  t.device("0000:00:1c.0", "pcieport", true, false);
  t.device("0000:00:05.0", "", true, false);
  t.device("0000:00:06.0", "pci-stub", true, false);
  t.device("0000:00:07.0", "mlx5_vfio_pci", true, false);
  auto all = group_members(5, t.root.string());
  REQUIRE(all.size() == 6);
  CHECK(all[0].name == "0000:00:03.0");
  CHECK(all[0].driver == "vfio-pci");
  CHECK(all[1].driver == "e1000e");
  auto blockers = group_blockers("0000:00:03.0", 5, t.root.string());
  REQUIRE(blockers.size() == 1);
  CHECK(blockers[0].name == "0000:00:04.0");
  CHECK(blockers[0].driver == "e1000e");
  CHECK(group_blockers("0000:00:04.0", 5, t.root.string()).empty());  // itself does not count
  CHECK(group_members(9, t.root.string()).empty());
}

TEST_CASE("sysfs: a cdev path leads back to its BDF") {
  Tree t;
  fs::path d = t.device("0000:00:03.0", "vfio-pci", true, true);
  fs::create_directories(t.root / "class/vfio-dev/vfio3");
  fs::create_directory_symlink(d, t.root / "class/vfio-dev/vfio3/device");
  CHECK(bdf_of_cdev("/dev/vfio/devices/vfio3", t.root.string()).value() == "0000:00:03.0");
  CHECK_FALSE(bdf_of_cdev("/dev/vfio/devices/vfio9", t.root.string()));
}
