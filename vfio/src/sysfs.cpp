#include "pinless/vfio/sysfs.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <filesystem>
#include <system_error>

namespace pinless::vfio {
namespace fs = std::filesystem;

namespace {
bool hex_digits(const std::string& s, size_t n) {
  if (s.size() != n) return false;
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}
std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string driver_of(const fs::path& device_dir) {
  std::error_code ec;
  fs::path driver = fs::read_symlink(device_dir / "driver", ec);
  return ec ? std::string() : driver.filename().string();
}

// A device without an IOMMU group: either the host has no IOMMU at all (no group exists; the
// usual case: VT-d/AMD-Vi off in the firmware or on the kernel command line) or this device
// lies outside every IOMMU's scope.
Error no_iommu_group(const std::string& bdf, const std::string& sysfs_root) {
  std::error_code ec;
  fs::directory_iterator groups(sysfs_root + "/kernel/iommu_groups", ec);
  bool any_group = !ec && groups != fs::directory_iterator();
  if (!any_group) {
    return Error("vfio device", ENXIO,
                 bdf + " has no IOMMU group: this host has no IOMMU enabled (no IOMMU groups at all), and "
                       "VFIO needs one (vfio-pci cannot even bind without it)",
                 "enable the IOMMU: turn on VT-d (Intel) or AMD-Vi/IOMMU (AMD) in the firmware (BIOS/UEFI) "
                 "setup, add intel_iommu=on to the host kernel command line on Intel (AMD-Vi is on unless "
                 "amd_iommu=off or iommu=off is given), reboot; then `dmesg | grep -e DMAR -e AMD-Vi` shows "
                 "it and /sys/kernel/iommu_groups fills up");
  }
  return Error("vfio device", ENXIO,
               bdf + " has no IOMMU group although the host has an IOMMU: the device lies outside every "
                     "IOMMU's scope",
               "check `dmesg | grep -e DMAR -e AMD-Vi` for this device; on Intel, intel_iommu=on must be on "
               "the host kernel command line and the firmware's DMAR table must cover the device's bus");
}
}  // namespace

Result<std::string> normalize_bdf(const std::string& text) {
  std::string s = lower(text);
  if (s.size() == 7) s = "0000:" + s;
  // DDDD:BB:DD.F
  bool ok = s.size() == 12 && s[4] == ':' && s[7] == ':' && s[10] == '.' &&
            hex_digits(s.substr(0, 4), 4) && hex_digits(s.substr(5, 2), 2) &&
            hex_digits(s.substr(8, 2), 2) && s[11] >= '0' && s[11] <= '7' &&
            std::stoi(s.substr(8, 2), nullptr, 16) < 32;
  if (!ok) {
    return fail("vfio device", EINVAL, "'" + text + "' is not a PCI address",
                "write it as DDDD:BB:DD.F, e.g. 0000:00:03.0 (see lspci -D)");
  }
  return s;
}

std::string bind_commands(const std::string& bdf) {
  return "echo vfio-pci > /sys/bus/pci/devices/" + bdf + "/driver_override; echo " + bdf +
         " > /sys/bus/pci/drivers_probe";
}

Result<DeviceLocation> locate_device(const std::string& bdf_text, const std::string& sysfs_root,
                                     const std::string& dev_root) {
  DeviceLocation loc;
  loc.bdf = PINLESS_TRY(normalize_bdf(bdf_text));
  loc.sysfs_path = sysfs_root + "/bus/pci/devices/" + loc.bdf;
  std::error_code ec;
  if (!fs::exists(loc.sysfs_path, ec)) {
    return fail("vfio device", ENOENT, loc.bdf + ": no such PCI device",
                "check the address with lspci -D");
  }
  fs::path group = fs::read_symlink(loc.sysfs_path + "/iommu_group", ec);
  if (ec) return std::unexpected(no_iommu_group(loc.bdf, sysfs_root));
  try {
    loc.group = std::stoi(group.filename().string());
  } catch (...) {
    return fail("vfio device", EINVAL, loc.bdf + ": odd iommu_group link " + group.string());
  }
  loc.driver = driver_of(loc.sysfs_path);
  if (loc.driver != "vfio-pci") {
    std::string now = loc.driver.empty() ? "no driver" : "driver " + loc.driver;
    return fail("vfio device", ENODEV, loc.bdf + " is not bound to vfio-pci (" + now + ")",
                "bind it: " + (loc.driver.empty() ? std::string() :
                               "echo " + loc.bdf + " > /sys/bus/pci/devices/" + loc.bdf +
                                   "/driver/unbind; ") +
                    bind_commands(loc.bdf));
  }
  for (const auto& e : fs::directory_iterator(loc.sysfs_path + "/vfio-dev", ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind("vfio", 0) == 0) {
      loc.cdev = dev_root + "/vfio/devices/" + name;
      break;
    }
  }
  return loc;
}

std::vector<GroupMember> group_members(int group, const std::string& sysfs_root) {
  std::vector<GroupMember> out;
  std::error_code ec;
  fs::path dir = fs::path(sysfs_root) / "kernel/iommu_groups" / std::to_string(group) / "devices";
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    out.push_back({e.path().filename().string(), driver_of(e.path())});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

bool driver_keeps_group_viable(const std::string& driver) {
  return driver.empty() || driver.find("vfio") != std::string::npos || driver == "pci-stub" ||
         driver == "pcieport";
}

std::vector<GroupMember> group_blockers(const std::string& bdf, int group, const std::string& sysfs_root) {
  std::vector<GroupMember> out;
  for (auto& m : group_members(group, sysfs_root)) {
    if (m.name != bdf && !driver_keeps_group_viable(m.driver)) out.push_back(std::move(m));
  }
  return out;
}

Result<std::string> bdf_of_cdev(const std::string& cdev_path, const std::string& sysfs_root) {
  std::string name = fs::path(cdev_path).filename().string();
  std::error_code ec;
  fs::path dev = fs::read_symlink(sysfs_root + "/class/vfio-dev/" + name + "/device", ec);
  if (ec) {
    return fail("vfio device", ENOENT, cdev_path + ": no such VFIO device",
                "list them with ls /dev/vfio/devices; the kernel needs CONFIG_VFIO_DEVICE_CDEV");
  }
  return normalize_bdf(dev.filename().string());
}

}  // namespace pinless::vfio
