#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "pinless/vfio/device_busy.h"

using namespace pinless;
using namespace pinless::vfio;
namespace fs = std::filesystem;

namespace {
// A fake /sys (one IOMMU group, 5) and /proc (processes with fd symlinks) under a temp dir.
struct Host {
  fs::path root;
  HostRoots roots;
  Host() {
    char tmpl[] = "/tmp/pinless-busy-XXXXXX";
    root = ::mkdtemp(tmpl);
    roots.sysfs = (root / "sys").string();
    roots.proc = (root / "proc").string();
    roots.dev = "/dev";
    roots.self_pid = 42;
    fs::create_directories(root / "proc");
  }
  ~Host() { fs::remove_all(root); }
  void device(const std::string& bdf, const std::string& driver, bool cdev = false) {
    fs::path d = root / "sys/bus/pci/devices" / bdf;
    fs::create_directories(d);
    if (!driver.empty()) {
      fs::create_directories(root / "sys/bus/pci/drivers" / driver);
      fs::create_directory_symlink(root / "sys/bus/pci/drivers" / driver, d / "driver");
    }
    fs::path g = root / "sys/kernel/iommu_groups/5";
    fs::create_directories(g / "devices");
    fs::create_directory_symlink(g, d / "iommu_group");
    fs::create_directory_symlink(d, g / "devices" / bdf);
    if (cdev) fs::create_directories(d / "vfio-dev/vfio3");
  }
  void process(int pid, const std::string& comm, const std::vector<std::string>& fds) {
    fs::path p = root / "proc" / std::to_string(pid);
    fs::create_directories(p / "fd");
    std::ofstream(p / "comm") << comm << "\n";
    for (size_t i = 0; i < fds.size(); ++i) fs::create_symlink(fds[i], p / "fd" / std::to_string(i + 3));
  }
};
}  // namespace

TEST_CASE("device busy: a group with a device on a host driver is named as not viable") {
  Host h;
  h.device("0000:00:03.0", "vfio-pci", true);
  h.device("0000:00:04.0", "e1000e");
  h.device("0000:00:1c.0", "pcieport");
  Error e = explain_busy(Error("VFIO_DEVICE_BIND_IOMMUFD", EPERM, "0000:00:03.0"), "0000:00:03.0", h.roots);
  CHECK(e.err() == EPERM);
  CHECK(e.op() == "VFIO_DEVICE_BIND_IOMMUFD");
  const std::string m = e.message();
  CHECK(m.find("0000:00:03.0: IOMMU group 5 is not viable: 0000:00:04.0 is bound to host driver e1000e") !=
        std::string::npos);
  CHECK(m.find("pcieport") == std::string::npos);  // a port driver does not block
  CHECK(m.find("echo 0000:00:04.0 > /sys/bus/pci/devices/0000:00:04.0/driver/unbind") != std::string::npos);
}

TEST_CASE("device busy: another process holding the group or the cdev is named") {
  Host h;
  h.device("0000:00:03.0", "vfio-pci", true);
  h.process(42, "self", {"/dev/vfio/5"});               // ourselves: ignored
  h.process(77, "bash", {"/dev/null", "/dev/vfio/9"});  // another device's group
  h.process(123, "pinless", {"/dev/null", "/dev/vfio/devices/vfio3"});
  std::ofstream(h.root / "proc/self") << "";  // non-numeric entries are skipped

  auto nodes = device_nodes("0000:00:03.0", h.roots);
  CHECK(nodes == std::vector<std::string>{"/dev/vfio/5", "/dev/vfio/devices/vfio3"});
  auto holders = find_holders(nodes, h.roots.proc, h.roots.self_pid);
  REQUIRE(holders.size() == 1);
  CHECK(holders[0].pid == 123);
  CHECK(holders[0].comm == "pinless");

  // A second BIND of a cdev gives EINVAL; the holder turns it into EBUSY with the cause.
  Error e = explain_busy(Error("VFIO_DEVICE_BIND_IOMMUFD", EINVAL, "0000:00:03.0"), "0000:00:03.0", h.roots);
  CHECK(e.err() == EBUSY);
  const std::string m = e.message();
  CHECK(m.find("0000:00:03.0: in use by another process/VM: pid 123 (pinless) holds /dev/vfio/devices/vfio3") !=
        std::string::npos);
  CHECK(m.find("one VM at a time") != std::string::npos);

  h.process(200, "qemu-system-x86", {"/dev/vfio/5"});
  Error both = explain_busy(Error("open", EBUSY, "/dev/vfio/5"), "0000:00:03.0", h.roots);
  CHECK(both.message().find("pid 123 (pinless) holds /dev/vfio/devices/vfio3, pid 200 (qemu-system-x86) holds "
                            "/dev/vfio/5") != std::string::npos);
}

TEST_CASE("device busy: nothing found keeps the kernel's answer, worded by errno") {
  Host h;
  h.device("0000:00:03.0", "vfio-pci", true);
  Error busy = explain_busy(Error("open", EBUSY, "/dev/vfio/5"), "0000:00:03.0", h.roots);
  CHECK(busy.err() == EBUSY);
  CHECK(busy.message().find("0000:00:03.0: in use by another process/VM (/dev/vfio/5)") != std::string::npos);

  Error inval = explain_busy(Error("VFIO_DEVICE_BIND_IOMMUFD", EINVAL, "0000:00:03.0"), "0000:00:03.0", h.roots);
  CHECK(inval.err() == EINVAL);
  CHECK(inval.hint().find("one VM at a time") != std::string::npos);

  // An existing hint (e.g. VFIO_SET_IOMMU's interrupt-remapping advice) is kept.
  Error perm = explain_busy(Error("VFIO_SET_IOMMU", EPERM, "/dev/vfio/5", "no interrupt remapping"), "0000:00:03.0",
                            h.roots);
  CHECK(perm.hint() == "no interrupt remapping");

  // A device unknown to sysfs: no group, no nodes, still an answer.
  Error unknown = explain_busy(Error("open", EBUSY, "x"), "0000:00:09.0", h.roots);
  CHECK(unknown.message().find("in use by another process/VM") != std::string::npos);
}
