#include "pinless/vfio/device_busy.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <system_error>

#include "pinless/vfio/sysfs.h"

namespace pinless::vfio {
namespace fs = std::filesystem;

namespace {

std::string read_comm(const fs::path& pid_dir) {
  std::ifstream f(pid_dir / "comm");
  std::string s;
  std::getline(f, s);
  return s;
}

std::string describe(const Holder& h) {
  return h.comm.empty() ? fmt::format("pid {}", h.pid) : fmt::format("pid {} ({})", h.pid, h.comm);
}

std::string unbind_hint(const std::vector<GroupMember>& blockers) {
  std::string cmds;
  for (const auto& m : blockers) {
    if (!cmds.empty()) cmds += "; ";
    cmds += "echo " + m.name + " > /sys/bus/pci/devices/" + m.name + "/driver/unbind";
  }
  return "every device of an IOMMU group must be bound to vfio-pci or to no driver before any of them "
         "can be passed through: " + cmds + " (or bind them to vfio-pci too, or move the device to a slot "
         "with its own group)";
}

}  // namespace

std::vector<Holder> find_holders(const std::vector<std::string>& nodes, const std::string& proc_root, int self_pid) {
  std::vector<Holder> out;
  std::error_code ec;
  for (const auto& p : fs::directory_iterator(proc_root, ec)) {
    const std::string name = p.path().filename().string();
    char* end = nullptr;
    long pid = std::strtol(name.c_str(), &end, 10);
    if (name.empty() || *end != '\0' || pid <= 0 || pid == self_pid) continue;
    std::error_code fd_ec;  // processes come and go, and other users' fds are unreadable
    for (const auto& fd : fs::directory_iterator(p.path() / "fd", fd_ec)) {
      std::error_code link_ec;
      std::string target = fs::read_symlink(fd.path(), link_ec).string();
      if (link_ec) continue;
      bool match = false;
      for (const auto& n : nodes) match = match || target == n;
      if (match) {
        out.push_back({int(pid), read_comm(p.path()), target});
        break;
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.pid < b.pid; });
  return out;
}

std::vector<std::string> device_nodes(const std::string& bdf, const HostRoots& roots) {
  std::vector<std::string> nodes;
  std::error_code ec;
  fs::path dev = fs::path(roots.sysfs) / "bus/pci/devices" / bdf;
  fs::path group = fs::read_symlink(dev / "iommu_group", ec);
  if (!ec) nodes.push_back(roots.dev + "/vfio/" + group.filename().string());
  for (const auto& e : fs::directory_iterator(dev / "vfio-dev", ec)) {
    nodes.push_back(roots.dev + "/vfio/devices/" + e.path().filename().string());
  }
  return nodes;
}

Error explain_busy(Error e, const std::string& bdf, const HostRoots& roots) {
  std::error_code ec;
  fs::path group_link = fs::read_symlink(fs::path(roots.sysfs) / "bus/pci/devices" / bdf / "iommu_group", ec);
  if (!ec) {
    int group = std::atoi(group_link.filename().string().c_str());
    auto blockers = group_blockers(bdf, group, roots.sysfs);
    if (!blockers.empty()) {
      std::string who;
      for (const auto& m : blockers) {
        who += (who.empty() ? "" : ", ") + m.name + " is bound to host driver " + m.driver;
      }
      return Error(e.op(), e.err(), fmt::format("{}: IOMMU group {} is not viable: {}", bdf, group, who),
                   unbind_hint(blockers));
    }
  }
  int self = roots.self_pid != 0 ? roots.self_pid : int(::getpid());
  auto holders = find_holders(device_nodes(bdf, roots), roots.proc, self);
  if (!holders.empty()) {
    std::string who;
    for (const auto& h : holders) who += (who.empty() ? "" : ", ") + describe(h) + " holds " + h.node;
    return Error(e.op(), EBUSY, bdf + ": in use by another process/VM: " + who,
                 "a VFIO device serves one VM at a time: stop that VM (or remove the device from it) first, "
                 "or pass a different device");
  }
  if (e.err() == EBUSY) {
    std::string where = e.context().empty() || e.context() == bdf ? "" : " (" + e.context() + ")";
    return Error(e.op(), EBUSY, bdf + ": in use by another process/VM" + where,
                 "the kernel says busy but no process holding its VFIO nodes was found (another user's "
                 "process, or a kernel driver of its group?): stop whatever uses it first");
  }
  return std::move(e).with_hint("if another process/VM has this device open (a VFIO device serves one VM at a "
                                "time), stop it first");
}

}  // namespace pinless::vfio
