#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "pinless/vmm/cli/config.h"

using namespace pinless;
using namespace pinless::vmm;
using Action = CliResult::Action;

namespace {
const HostLimits kHost{8 * kGiB};

// A real file to pass as --kernel / --initrd.
struct TempFile {
  std::string path;
  TempFile() {
    char tmpl[] = "/tmp/pinless-cli-XXXXXX";
    int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, "x", 1) == 1);
    ::close(fd);
    path = tmpl;
  }
  ~TempFile() { ::unlink(path.c_str()); }
};

CliResult parse(std::vector<std::string> args) { return parse_cli(args, kHost); }

std::string error_of(std::vector<std::string> args) {
  auto r = parse(std::move(args));
  REQUIRE(r.action == Action::kError);
  CHECK(r.text.find('\n') == std::string::npos);  // one line
  return r.text;
}
}  // namespace

TEST_CASE("defaults: 1 vCPU, 512M, stdio serial, documented cmdline, no timeline") {
  TempFile k;
  auto r = parse({"run", "--kernel", k.path});
  REQUIRE(r.action == Action::kRun);
  CHECK(r.config.kernel == k.path);
  CHECK(r.config.cpus == 1);
  CHECK(r.config.memory.size == 512 * kMiB);
  CHECK_FALSE(r.config.memory.hugepages);
  CHECK(r.config.cmdline == "console=ttyS0 reboot=k panic=-1 quiet");
  CHECK(r.config.serial == VmConfig::Serial::kStdio);
  CHECK_FALSE(r.config.timeline);
  CHECK(r.config.log_level == "warn");
}

TEST_CASE("every option parses") {
  TempFile k, i;
  auto r = parse({"run", "--kernel", k.path, "--initrd", i.path, "--cmdline", "console=ttyS0 x",
                  "--cpus", "4", "--memory", "size=2G,hugepages=on", "--serial",
                  "file=/tmp/console.log", "--timeline=/tmp/t.json", "--log-level", "debug"});
  REQUIRE(r.action == Action::kRun);
  CHECK(r.config.initrd == i.path);
  CHECK(r.config.cmdline == "console=ttyS0 x");
  CHECK(r.config.cpus == 4);
  CHECK(r.config.memory.size == 2 * kGiB);
  CHECK(r.config.memory.hugepages);
  CHECK(r.config.serial == VmConfig::Serial::kFile);
  CHECK(r.config.serial_file == "/tmp/console.log");
  CHECK(r.config.timeline);
  CHECK(r.config.timeline_file == "/tmp/t.json");
  CHECK(r.config.log_level == "debug");
}

TEST_CASE("--timeline without a value means stderr; --memory accepts a bare size and thp") {
  TempFile k;
  auto r = parse({"run", "--kernel", k.path, "--timeline", "--memory", "1G,thp=on", "--serial", "off"});
  REQUIRE(r.action == Action::kRun);
  CHECK(r.config.timeline);
  CHECK(r.config.timeline_file.empty());
  CHECK(r.config.memory.size == kGiB);
  CHECK(r.config.memory.thp);
  CHECK(r.config.serial == VmConfig::Serial::kOff);
}

TEST_CASE("bad --memory values name the problem and the fix") {
  TempFile k;
  auto mem = [&](const std::string& v) { return error_of({"run", "--kernel", k.path, "--memory", v}); };
  CHECK(mem("size=1G,huge=on").find("unknown key 'huge'") != std::string::npos);
  CHECK(mem("size=lots").find("does not parse") != std::string::npos);
  CHECK(mem("size=32M").find("at least 64M") != std::string::npos);
  CHECK(mem("size=16G").find("this host's 8G") != std::string::npos);
  CHECK(mem("size=65M").find("multiple of 2M") != std::string::npos);
  CHECK(mem("size=1G,hugepages=yes").find("hugepages=on") != std::string::npos);
  CHECK(mem("hugepages=on").find("no size") != std::string::npos);
  CHECK(mem("size=1G,hugepages=on,thp=on").find("pick one") != std::string::npos);
}

TEST_CASE("bad --cpus, --serial, --log-level and files") {
  TempFile k;
  CHECK(error_of({"run", "--kernel", k.path, "--cpus", "0"}).find("between 1 and 64") != std::string::npos);
  CHECK(error_of({"run", "--kernel", k.path, "--cpus", "65"}).find("between 1 and 64") != std::string::npos);
  CHECK(error_of({"run", "--kernel", k.path, "--cpus", "two"}).find("cpus") != std::string::npos);
  CHECK(error_of({"run", "--kernel", k.path, "--serial", "tcp"}).find("stdio, file=PATH or off") != std::string::npos);
  CHECK(error_of({"run", "--kernel", k.path, "--serial", "file="}).find("file=PATH") != std::string::npos);
  CHECK(error_of({"run", "--kernel", k.path, "--log-level", "loud"}).find("log-level") != std::string::npos);
  auto missing = error_of({"run", "--kernel", "/nonexistent/bzImage"});
  CHECK(missing.find("/nonexistent/bzImage") != std::string::npos);
  CHECK(missing.find("no such file") != std::string::npos);
  CHECK(error_of({"run", "--kernel", k.path, "--initrd", "/nonexistent/initrd"}).find("--initrd") != std::string::npos);
  CHECK(error_of({"run"}).find("--kernel") != std::string::npos);
  CHECK(error_of({"run", "--kernel", k.path, "--bogus"}).find("--bogus") != std::string::npos);
}

TEST_CASE("help and version") {
  auto top = parse({"--help"});
  CHECK(top.action == Action::kHelp);
  CHECK(top.text.find("run") != std::string::npos);
  auto none = parse({});
  CHECK(none.action == Action::kHelp);
  auto run = parse({"run", "--help"});
  CHECK(run.action == Action::kHelp);
  for (const char* opt : {"--kernel", "--initrd", "--cmdline", "--cpus", "--memory", "--serial",
                          "--timeline", "--log-level", "console=ttyS0 reboot=k panic=-1 quiet"}) {
    CHECK_MESSAGE(run.text.find(opt) != std::string::npos, opt);
  }
  auto v = parse({"--version"});
  CHECK(v.action == Action::kVersion);
  CHECK(v.text.rfind("pinless ", 0) == 0);
}

TEST_CASE("cli: --exit-status guest (the default) or vmm; anything else is a one-line error") {
  TempFile k;
  CHECK(parse({"run", "--kernel", k.path}).config.exit_status == ExitStatusMode::kGuest);
  auto r = parse({"run", "--kernel", k.path, "--exit-status", "vmm"});
  REQUIRE(r.action == Action::kRun);
  CHECK(r.config.exit_status == ExitStatusMode::kVmm);
  r = parse({"run", "--kernel", k.path, "--exit-status=guest"});
  REQUIRE(r.action == Action::kRun);
  CHECK(r.config.exit_status == ExitStatusMode::kGuest);
  std::string e = error_of({"run", "--kernel", k.path, "--exit-status", "host"});
  CHECK(e.find("--exit-status host") != std::string::npos);
  CHECK(e.find("guest or vmm") != std::string::npos);
  auto help = parse({"run", "--help"});
  CHECK(help.text.find("--exit-status") != std::string::npos);
  CHECK(help.text.find("--exit-status vmm") != std::string::npos);  // the footer explains both
}

TEST_CASE("cli: --seccomp on (the default), log or off; --seccomp-selftest vcpu or loop") {
  TempFile k;
  auto r = parse({"run", "--kernel", k.path});
  CHECK(r.config.seccomp == seccomp::Mode::kTrap);
  CHECK(r.config.seccomp_selftest.empty());
  r = parse({"run", "--kernel", k.path, "--seccomp", "log", "--seccomp-selftest", "vcpu"});
  REQUIRE(r.action == Action::kRun);
  CHECK(r.config.seccomp == seccomp::Mode::kLog);
  CHECK(r.config.seccomp_selftest == "vcpu");
  CHECK(parse({"run", "--kernel", k.path, "--seccomp=off"}).config.seccomp == seccomp::Mode::kOff);
  CHECK(error_of({"run", "--kernel", k.path, "--seccomp", "strict"}).find("--seccomp") != std::string::npos);
  CHECK(error_of({"run", "--kernel", k.path, "--seccomp-selftest", "api"}).find("--seccomp-selftest") !=
        std::string::npos);
}

TEST_CASE("cli: --device vfio is repeatable and keeps the order") {
  TempFile k;
  auto r = parse({"run", "--kernel", k.path, "--device", "vfio,host=00:03.0", "--device",
                  "vfio,path=/dev/vfio/devices/vfio1"});
  REQUIRE(r.action == Action::kRun);
  REQUIRE(r.config.vfio_devices.size() == 2);
  CHECK(r.config.vfio_devices[0].host == "0000:00:03.0");
  CHECK(r.config.vfio_devices[1].path == "/dev/vfio/devices/vfio1");
  CHECK(r.config.iommu_backend == iommu::BackendChoice::kAuto);
  CHECK(r.config.iommufd_fd == -1);
}

TEST_CASE("cli: bad --device values name the fix") {
  TempFile k;
  CHECK(error_of({"run", "--kernel", k.path, "--device", "virtio-net"}).find("unknown device") != std::string::npos);
  CHECK(error_of({"run", "--kernel", k.path, "--device", "vfio,host=zz"}).find("not a PCI address") !=
        std::string::npos);
  CHECK(error_of({"run", "--kernel", k.path, "--device", "vfio"}).find("exactly one") != std::string::npos);
  CHECK(error_of({"run", "--kernel", k.path, "--device", "vfio,host=00:03.0,path=/x"}).find("exactly one") !=
        std::string::npos);
  CHECK(error_of({"run", "--kernel", k.path, "--device", "vfio,bus=1"}).find("unknown") != std::string::npos);
  CHECK(error_of({"run", "--kernel", k.path, "--device", "vfio,host=00:03.0", "--device",
                  "vfio,host=0000:00:03.0"})
            .find("twice") != std::string::npos);
}

TEST_CASE("cli: --iommu-backend and --iommufd-fd") {
  TempFile k;
  auto r = parse({"run", "--kernel", k.path, "--iommu-backend", "type1"});
  REQUIRE(r.action == Action::kRun);
  CHECK(r.config.iommu_backend == iommu::BackendChoice::kType1);
  auto f = parse({"run", "--kernel", k.path, "--iommufd-fd", "9"});
  REQUIRE(f.action == Action::kRun);
  CHECK(f.config.iommufd_fd == 9);
  CHECK(f.config.iommu_backend == iommu::BackendChoice::kIommufd);
  CHECK(parse({"run", "--kernel", k.path, "--iommu-backend", "iommufd"}).config.iommu_backend ==
        iommu::BackendChoice::kIommufd);
  CHECK(error_of({"run", "--kernel", k.path, "--iommu-backend", "vfio"}) ==
        "run: --iommu-backend: vfio not in {auto,iommufd,type1}");
  CHECK(error_of({"run", "--kernel", k.path, "--iommufd-fd", "9", "--iommu-backend", "type1"}).find("exclude") !=
        std::string::npos);
  CHECK(error_of({"run", "--kernel", k.path, "--iommufd-fd", "-3"}).find("file descriptor") != std::string::npos);
}

TEST_CASE("cli: --viommu needs iommufd and pinned RAM") {
  TempFile k;
  auto off = parse({"run", "--kernel", k.path});
  REQUIRE(off.action == Action::kRun);
  CHECK_FALSE(off.config.viommu);
  auto on = parse({"run", "--kernel", k.path, "--viommu", "--device", "vfio,host=0000:00:03.0"});
  REQUIRE(on.action == Action::kRun);
  CHECK(on.config.viommu);
  CHECK(on.config.iommu_backend == iommu::BackendChoice::kIommufd);  // auto becomes iommufd
  CHECK(error_of({"run", "--kernel", k.path, "--viommu", "--iommu-backend", "type1"}).find("needs --iommu-backend=iommufd") !=
        std::string::npos);
  CHECK(error_of({"run", "--kernel", k.path, "--viommu", "--ram-region", "0:64M,dma=fault"}).find("dma=fault") !=
        std::string::npos);
  CHECK(error_of({"run", "--kernel", k.path, "--viommu", "--iommufd-fd", "9", "--device", "mock,idev=1,stdev=2,home=3"})
            .find("--device mock") != std::string::npos);
}

TEST_CASE("cli: check, with and without --json") {
  auto r = parse({"check"});
  CHECK(r.action == Action::kCheck);
  CHECK_FALSE(r.check_json);
  r = parse({"check", "--json"});
  CHECK(r.action == Action::kCheck);
  CHECK(r.check_json);
  r = parse({"check", "--bogus"});
  CHECK(r.action == Action::kError);
  r = parse({"check", "--help"});
  CHECK(r.action == Action::kHelp);
  CHECK(r.text.find("--json") != std::string::npos);
}

TEST_CASE("cli: the option parsers return a Status whose message is the printed line") {
  MemoryConfig m{};
  REQUIRE(parse_memory_option("size=1G,thp=on", kHost, &m));
  CHECK(m.size == kGiB);
  CHECK(m.thp);
  auto bad = parse_memory_option("size=1G,thp=maybe", kHost, &m);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message() == "--memory: thp=maybe is not on or off; write thp=on");
  CHECK((m.size == kGiB && m.thp));  // *out untouched on failure
  TempFile k;
  CHECK(error_of({"run", "--kernel", k.path, "--memory", "size=1G,thp=maybe"}) == bad.error().message());
  VmConfig cfg;
  REQUIRE(parse_device_option("vfio,host=00:03.0", &cfg));
  auto twice = parse_device_option("vfio,host=0000:00:03.0", &cfg);
  REQUIRE_FALSE(twice);
  CHECK(twice.error().message() == "--device vfio,host=0000:00:03.0: the same device is given twice");
}

TEST_CASE("--api-socket and pinless ctl") {
  TempFile k;
  auto r = parse({"run", "--kernel", k.path, "--api-socket", "/run/vm1.sock"});
  REQUIRE(r.action == Action::kRun);
  CHECK(r.config.api_socket == "/run/vm1.sock");
  CHECK(parse({"run", "--kernel", k.path}).config.api_socket.empty());

  auto c = parse({"ctl", "--api-socket", "/run/vm1.sock", "--json", "counters"});
  REQUIRE(c.action == Action::kCtl);
  CHECK(c.ctl.api_socket == "/run/vm1.sock");
  CHECK(c.ctl.command == "counters");
  CHECK(c.ctl.json);
  auto s = parse({"ctl", "--api-socket", "/s", "shutdown", "--timeout", "5"});
  REQUIRE(s.action == Action::kCtl);
  CHECK(s.ctl.timeout_s == 5);

  auto bad = parse({"ctl", "--api-socket", "/s", "reboot"});
  CHECK(bad.action == Action::kError);
  CHECK(bad.text.find("reboot") != std::string::npos);
  CHECK(parse({"ctl", "info"}).action == Action::kError);  // --api-socket is required
  auto t = parse({"ctl", "--api-socket", "/s", "pause", "--timeout", "5"});
  CHECK(t.action == Action::kError);
  CHECK(t.text.find("only applies to shutdown") != std::string::npos);
  CHECK(parse({"ctl", "--api-socket", "/s", "shutdown", "--timeout", "0"}).action == Action::kError);
  auto rr = parse({"ctl", "--api-socket", "/s", "ram-region", "--offset", "256M", "--premap", "16"});
  REQUIRE(rr.action == Action::kCtl);
  CHECK(rr.ctl.offset == "268435456");
  CHECK(rr.ctl.premap == 16);
  CHECK(parse({"ctl", "--api-socket", "/s", "ram-region", "--offset", "0x1000", "--window", "forward"}).action ==
        Action::kCtl);
  auto sw = parse({"ctl", "--api-socket", "/s", "ram-region", "--offset", "64M", "--dma", "fault", "--premap", "16"});
  REQUIRE(sw.action == Action::kCtl);
  CHECK(sw.ctl.dma == "fault");
  CHECK(parse({"ctl", "--api-socket", "/s", "ram-region", "--offset", "0", "--dma", "pin"}).ctl.dma == "pin");
  CHECK(parse({"ctl", "--api-socket", "/s", "ram-region", "--offset", "0", "--dma", "pin", "--premap", "4"}).text.find(
            "apply to --dma fault only") != std::string::npos);
  for (std::vector<std::string> bad : {std::vector<std::string>{"ctl", "--api-socket", "/s", "ram-region", "--premap", "16"},
                                       {"ctl", "--api-socket", "/s", "ram-region", "--offset", "0"},
                                       {"ctl", "--api-socket", "/s", "ram-region", "--offset", "x", "--premap", "1"},
                                       {"ctl", "--api-socket", "/s", "ram-region", "--offset", "0", "--premap", "0"},
                                       {"ctl", "--api-socket", "/s", "ram-region", "--offset", "0", "--window", "wide"},
                                       {"ctl", "--api-socket", "/s", "ram-region", "--offset", "0", "--dma", "both"},
                                       {"ctl", "--api-socket", "/s", "info", "--dma", "pin"},
                                       {"ctl", "--api-socket", "/s", "info", "--premap", "4"}}) {
    CAPTURE(bad.back());
    CHECK(parse(bad).action == Action::kError);
  }
  auto help = parse({"ctl", "--help"});
  CHECK(help.action == Action::kHelp);
  CHECK(help.text.find("power button") != std::string::npos);
}
