#include "pinless/vmm/cli/config.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>

#include "pinless/base/size.h"
#include "pinless/vfio/sysfs.h"
#include "pinless/vmm/version.h"
#include "option_text.h"

namespace pinless::vmm {
namespace {

using cli_text::bad_option;
using cli_text::split;

// "on"/"off" -> bool; anything else is an error.
Status parse_switch(const std::string& key, const std::string& value, bool* out) {
  if (value == "on") {
    *out = true;
  } else if (value == "off") {
    *out = false;
  } else {
    return bad_option("--memory: " + key + "=" + value + " is not on or off; write " + key + "=on");
  }
  return {};
}

Status check_readable(const std::string& what, const std::string& path) {
  if (::access(path.c_str(), R_OK) == 0) return {};
  int e = errno;
  if (e == ENOENT) return bad_option("--" + what + " " + path + ": no such file; check the path");
  return bad_option("--" + what + " " + path + ": cannot read it (" + std::strerror(e) +
                    "); fix its permissions");
}

}  // namespace

HostLimits host_limits() {
  long pages = ::sysconf(_SC_PHYS_PAGES);
  long page = ::sysconf(_SC_PAGESIZE);
  return HostLimits{pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : 0};
}

Status parse_memory_option(const std::string& value, const HostLimits& host, MemoryConfig* out) {
  MemoryConfig m{0, false, false};
  bool have_size = false;
  for (const auto& item : split(value, ',')) {
    auto eq = item.find('=');
    std::string key = eq == std::string::npos ? "" : item.substr(0, eq);
    std::string val = eq == std::string::npos ? item : item.substr(eq + 1);
    if (key.empty() && !have_size && !item.empty() && eq == std::string::npos) key = "size";
    if (key == "size") {
      auto size = parse_size(val);
      if (!size) return bad_option("--memory: size '" + val + "' does not parse; write a size like 512M or 4G");
      m.size = *size;
      have_size = true;
    } else if (key == "hugepages") {
      PINLESS_TRY_VOID(parse_switch(key, val, &m.hugepages));
    } else if (key == "thp") {
      PINLESS_TRY_VOID(parse_switch(key, val, &m.thp));
    } else {
      return bad_option("--memory: unknown key '" + (key.empty() ? item : key) +
                        "'; the keys are size, hugepages and thp (e.g. size=1G,hugepages=on)");
    }
  }
  if (!have_size) return bad_option("--memory: no size given; write size=512M");
  if (m.size < kMinMemory) {
    return bad_option("--memory: " + format_size(m.size) + " is too little; give the guest at least 64M");
  }
  if (m.size % GuestMemory::kHugePageSize != 0) {
    return bad_option("--memory: " + format_size(m.size) + " is not a multiple of 2M; round it to 2M");
  }
  if (host.memory_bytes != 0 && m.size > host.memory_bytes) {
    return bad_option("--memory: " + format_size(m.size) + " is more than this host's " +
                      format_size(host.memory_bytes) + " of RAM; give the guest less");
  }
  if (m.hugepages && m.thp) {
    return bad_option("--memory: hugepages=on and thp=on exclude each other; pick one");
  }
  *out = m;
  return {};
}

Status parse_device_option(const std::string& value, VmConfig* out) {
  auto items = split(value, ',');
  if (!items.empty() && items[0] == "mock") {
    return parse_mock_device_option(value, &out->dma);
  }
  if (items.empty() || items[0] != "vfio") {
    return bad_option("--device " + value + ": unknown device; write vfio,host=DDDD:BB:DD.F or "
                      "vfio,path=/dev/vfio/devices/vfioN");
  }
  VmConfig::VfioDevice dev;
  for (size_t i = 1; i < items.size(); ++i) {
    auto [key, val] = cli_text::key_value(items[i]);
    if (key == "host" && !val.empty()) {
      auto bdf = vfio::normalize_bdf(val);
      if (!bdf) {
        return bad_option("--device " + value + ": '" + val + "' is not a PCI address; write DDDD:BB:DD.F (lspci -D)");
      }
      dev.host = *bdf;
    } else if (key == "path" && !val.empty()) {
      dev.path = val;
    } else {
      return bad_option("--device " + value + ": unknown or empty key '" + key + "'; the keys are host and path");
    }
  }
  if (dev.host.empty() == dev.path.empty()) {
    return bad_option("--device " + value +
                      ": give exactly one of host=DDDD:BB:DD.F or path=/dev/vfio/devices/vfioN");
  }
  for (const auto& d : out->vfio_devices) {
    if ((!dev.host.empty() && d.host == dev.host) || (!dev.path.empty() && d.path == dev.path)) {
      return bad_option("--device " + value + ": the same device is given twice");
    }
  }
  out->vfio_devices.push_back(std::move(dev));
  return {};
}

CliResult parse_cli(const std::vector<std::string>& args, const HostLimits& host) {
  CliResult result;
  VmConfig cfg;
  CLI::App app{"pinless: a minimal KVM virtual machine monitor", "pinless"};
  app.set_version_flag("--version", version_string());
  app.require_subcommand(0, 1);
  CLI::App* run = app.add_subcommand("run", "Boot a Linux kernel in a new VM and wait for it to end");
  run->add_option("--kernel", cfg.kernel, "bzImage or uncompressed ELF vmlinux (required)")->required();
  run->add_option("--initrd", cfg.initrd, "initramfs to load high in guest RAM");
  run->add_option("--cmdline", cfg.cmdline, "kernel command line")->default_str(kDefaultCmdline);
  int64_t cpus = 1;
  run->add_option("--cpus", cpus, "number of vCPUs, 1..64 (and at most the host KVM's limit)")
      ->default_str("1");
  std::string memory;
  run->add_option("--memory", memory,
                  "guest RAM: size=S[,hugepages=on][,thp=on]; S like 512M or 4G, at least 64M, "
                  "a multiple of 2M. hugepages=on backs it with 2M hugetlbfs pages, thp=on "
                  "asks for transparent huge pages (guest RAM is shmem: they need "
                  "/sys/kernel/mm/transparent_hugepage/shmem_enabled set to advise)")
      ->default_str("size=512M");
  std::string serial = "stdio";
  run->add_option("--serial", serial, "COM1 (ttyS0) output: stdio, file=PATH or off (no UART)")
      ->default_str("stdio");
  auto* timeline = run->add_option("--timeline", cfg.timeline_file,
                                   "print the startup timeline as JSON to stderr, or with "
                                   "--timeline=FILE write it to FILE (docs/timeline.md)")
                       ->expected(0, 1);
  run->add_option("--log-level", cfg.log_level, "error, warn, info, debug or trace")
      ->default_str("warn")
      ->check(CLI::IsMember({"error", "warn", "info", "debug", "trace"}));
  std::vector<std::string> device_specs;
  run->add_option("--device", device_specs,
                  "pass a host PCI device through with VFIO: vfio,host=DDDD:BB:DD.F or "
                  "vfio,path=/dev/vfio/devices/vfioN (repeatable; bind it to vfio-pci first). Tests: "
                  "mock,idev=I,stdev=S,home=H, an IOMMUFD_TEST mock device on the --iommufd-fd")
      ->expected(1)
      ->take_all();
  // Parsed here, once, into the enum: IsMember rejects an unknown name (its message lists the
  // names), then Transformer maps the name to the enum's number, which CLI11 stores.
  const auto& backends = iommu::backend_choice_names();
  run->add_option("--iommu-backend", cfg.iommu_backend,
                  "host DMA API for --device: auto (iommufd when available, else VFIO type1), "
                  "iommufd or type1")
      ->default_str("auto")
      ->transform(CLI::Transformer(backends).description(""))
      ->transform(CLI::IsMember(backends));  // transform() prepends: this one runs first
  int64_t iommufd_fd = -1;
  auto* iommufd_opt = run->add_option("--iommufd-fd", iommufd_fd,
                                      "use this already open iommufd (passed in by a manager); implies "
                                      "--iommu-backend=iommufd");
  run->add_flag("--viommu", cfg.viommu,
                "give the guest a virtio-iommu (at 00:01.0) and put every --device behind it: the guest's "
                "DMA mappings become the devices' host mappings (needs iommufd and dma=pin RAM)");
  std::vector<std::string> region_specs;
  run->add_option("--ram-region", region_specs,
                  "DMA policy for part of guest RAM: OFFSET:SIZE,dma=pin|fault[,premap=N]"
                  "[,window=forward|aligned|hint] (offsets count RAM bytes as --memory does; "
                  "repeatable; RAM not named is dma=pin; see docs/dma.md)")
      ->expected(1)
      ->take_all();
  std::string fallback = "fail";
  run->add_option("--dma-fallback", fallback,
                  "when a dma=fault region cannot fault (no iommufd, kernel < 6.13, device or IOMMU "
                  "without page requests): fail, or pin it instead")
      ->default_str("fail")
      ->check(CLI::IsMember({"fail", "pin"}));
  std::string pin_limit;
  run->add_option("--pin-limit", pin_limit,
                  "most guest RAM this VM may pin for DMA: SIZE[,reclaim=on|off] (reclaim: unmap cold "
                  "fault windows to stay under it)");
  std::string exit_status_mode = "guest";
  run->add_option("--exit-status", exit_status_mode,
                  "what the exit status carries: guest (the guest's 0xf5 status on poweroff; it can "
                  "overlap pinless's own 1, 2, 3, 128+N) or vmm (pinless's outcome only; see below)")
      ->default_str("guest");
  run->add_option("--api-socket", cfg.api_socket,
                  "serve the control API (HTTP/JSON, docs/api.md) on this Unix socket, mode 0600; "
                  "`pinless ctl --api-socket PATH ...` or curl --unix-socket talk to it");
  std::string seccomp_mode = "on";
  run->add_option("--seccomp", seccomp_mode,
                  "per-thread syscall filters once the guest runs: on (a forbidden syscall stops pinless "
                  "with SIGSYS and names it), log (allowed, logged by the kernel: dmesg), off; see docs/seccomp.md")
      ->default_str("on")
      ->check(CLI::IsMember({"on", "log", "off"}));
  run->add_option("--seccomp-selftest", cfg.seccomp_selftest,
                  "for tests: THREAD (vcpu or loop) makes a syscall its filter forbids right after "
                  "installing it; with --seccomp on, pinless must die of SIGSYS")
      ->check(CLI::IsMember({"vcpu", "loop"}));
  CLI::App* check = app.add_subcommand(
      "check", "Report what this host offers pinless (KVM and its speed, IOMMU, iommufd, VFIO, "
               "page requests, pinning limits, huge pages); exit 0 when guests can run at speed");
  check->add_flag("--json", result.check_json, "print the report and the raw facts as JSON");
  check->footer("Each item is PASS, WARN (a feature will not work, and what to do) or FAIL (no guest\n"
                "can run). The KVM speed probe times a small guest loop against the same loop on the\n"
                "host; below 0.2x, KVM counts as unusable (docs/check.md). Exit status: 0 usable, 1 not.");
  CLI::App* ctl = app.add_subcommand("ctl", "Ask or tell a running pinless (started with --api-socket) "
                                            "through its control API");
  ctl->add_option("--api-socket", result.ctl.api_socket, "the socket given to `pinless run --api-socket`")->required();
  ctl->add_flag("--json", result.ctl.json, "print the JSON response as it came (for scripts)");
  ctl->add_option("--timeout", result.ctl.timeout_s,
                  "shutdown: seconds the guest gets to power off before pinless stops it (default 30)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{3600}));
  ctl->add_option("--offset", result.ctl.offset, "ram-region: where the region starts in guest RAM (0, 256M, 0x10000000)");
  ctl->add_option("--dma", result.ctl.dma,
                  "ram-region: switch the region to pin (map and pin it whole now) or fault (unmap it; devices "
                  "fault it in)")
      ->check(CLI::IsMember({"pin", "fault"}));
  ctl->add_option("--premap", result.ctl.premap, "ram-region: pages mapped per fault from now on, 1..262144")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 18));
  ctl->add_option("--window", result.ctl.window, "ram-region: window placement from now on: aligned, forward or hint")
      ->check(CLI::IsMember({"aligned", "forward", "hint"}));
  ctl->add_option("command", result.ctl.command,
                  "info | counters | timeline | pause | resume | shutdown (ACPI power button) | stop (now) | "
                  "ram-region (a region's DMA policy: pin or fault, premap window)")
      ->required()
      ->check(CLI::IsMember({"info", "counters", "timeline", "pause", "resume", "shutdown", "stop", "ram-region"}));
  ctl->footer("Exit status: 0 when pinless did what was asked, 1 when it answered with an error or\n"
              "could not be reached (the message says which).");
  const char* exit_status_text =
      "Exit status of 'pinless run': the status the guest wrote to port 0xf5 before powering\n"
      "off (0 if none), 1 if pinless failed, 2 if the guest reset (reboot, triple fault,\n"
      "panic), 3 if KVM reported a guest crash, 128+N if stopped by signal N (SIGINT/SIGTERM\n"
      "stop the VM cleanly), 0 if stopped through the control API (vm.stop). A guest may\n"
      "report 1, 2, 3 or 128+N itself; with --exit-status vmm\n"
      "it cannot be mistaken for pinless: 0 then means the guest powered off reporting 0 or\n"
      "nothing, 4 that it powered off reporting N != 0 (stderr: 'pinless: guest exit status N'),\n"
      "and 1, 2, 3, 128+N are pinless's own as above (docs/guest-abi.md).";
  app.footer(exit_status_text);
  run->footer(std::string("The guest's debug port 0xf4/0xf5 and power paths follow docs/guest-abi.md.\n") +
              exit_status_text);

  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 parses from the back
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    result.action = CliResult::Action::kHelp;
    result.text = run->parsed() ? run->help() : check->parsed() ? check->help() : ctl->parsed() ? ctl->help() : app.help();
    return result;
  } catch (const CLI::CallForVersion&) {
    result.action = CliResult::Action::kVersion;
    result.text = std::string(version_string()) + "\n";
    return result;
  } catch (const CLI::ParseError& e) {
    result.text = e.what();
    if (result.text.find("run") == std::string::npos && run->parsed()) result.text = "run: " + result.text;
    return result;
  }
  if (check->parsed()) {
    result.action = CliResult::Action::kCheck;
    return result;
  }
  if (ctl->parsed()) {
    if (result.ctl.timeout_s != 0 && result.ctl.command != "shutdown") {
      result.text = "ctl: --timeout only applies to shutdown";
      return result;
    }
    const bool region_opts = !result.ctl.offset.empty() || !result.ctl.dma.empty() || result.ctl.premap != 0 ||
                             !result.ctl.window.empty();
    if (result.ctl.command == "ram-region") {
      if (result.ctl.offset.empty() || (result.ctl.dma.empty() && result.ctl.premap == 0 && result.ctl.window.empty())) {
        result.text = "ctl ram-region: give --offset and --dma, --premap and/or --window";
        return result;
      }
      if (result.ctl.dma == "pin" && (result.ctl.premap != 0 || !result.ctl.window.empty())) {
        result.text = "ctl ram-region: --premap and --window apply to --dma fault only";
        return result;
      }
      auto off = parse_size(result.ctl.offset);
      if (!off) {
        result.text = "ctl ram-region: --offset '" + result.ctl.offset + "' does not parse; write 0, 256M or 0x10000000";
        return result;
      }
      result.ctl.offset = std::to_string(*off);
    } else if (region_opts) {
      result.text = "ctl: --offset, --dma, --premap and --window only apply to ram-region";
      return result;
    }
    result.action = CliResult::Action::kCtl;
    return result;
  }
  if (!run->parsed()) {
    result.action = CliResult::Action::kHelp;
    result.text = app.help();
    return result;
  }
  auto error = [&](std::string text) {
    result.action = CliResult::Action::kError;
    result.text = std::move(text);
    return result;
  };
  if (cpus < 1 || cpus > int64_t(kMaxCpus)) {
    return error("--cpus " + std::to_string(cpus) + ": give between 1 and 64 vCPUs");
  }
  cfg.cpus = uint32_t(cpus);
  if (!memory.empty()) {
    if (auto s = parse_memory_option(memory, host, &cfg.memory); !s) return error(s.error().message());
  } else if (host.memory_bytes != 0 && cfg.memory.size > host.memory_bytes) {
    return error("--memory: the default 512M is more than this host's RAM; give --memory size=S");
  }
  if (serial == "stdio") {
    cfg.serial = VmConfig::Serial::kStdio;
  } else if (serial == "off") {
    cfg.serial = VmConfig::Serial::kOff;
  } else if (serial.rfind("file=", 0) == 0 && serial.size() > 5) {
    cfg.serial = VmConfig::Serial::kFile;
    cfg.serial_file = serial.substr(5);
  } else {
    return error("--serial " + serial + ": write stdio, file=PATH or off");
  }
  if (exit_status_mode == "guest" || exit_status_mode == "vmm") {
    cfg.exit_status = exit_status_mode == "vmm" ? ExitStatusMode::kVmm : ExitStatusMode::kGuest;
  } else {
    return error("--exit-status " + exit_status_mode +
                 ": write guest or vmm (vmm keeps the guest's status apart from pinless's own; docs/guest-abi.md)");
  }
  cfg.seccomp = seccomp_mode == "off" ? seccomp::Mode::kOff : seccomp_mode == "log" ? seccomp::Mode::kLog
                                                                                 : seccomp::Mode::kTrap;
  cfg.timeline = timeline->count() > 0;
  for (const auto& spec : device_specs) {
    if (auto s = parse_device_option(spec, &cfg); !s) return error(s.error().message());
  }
  for (const auto& spec : region_specs) {
    if (auto st = parse_ram_region_option(spec, &cfg.dma); !st) return error(st.error().message());
  }
  if (auto st = check_ram_regions(cfg.memory.size, &cfg.dma); !st) return error(st.error().message());
  cfg.dma.fallback_pin = fallback == "pin";
  if (!pin_limit.empty()) {
    if (auto st = parse_pin_limit_option(pin_limit, &cfg.dma); !st) return error(st.error().message());
  }
  if (iommufd_opt->count() > 0) {
    if (iommufd_fd < 0 || iommufd_fd > 1 << 20) {
      return error("--iommufd-fd " + std::to_string(iommufd_fd) + ": give an open file descriptor number");
    }
    if (cfg.iommu_backend == iommu::BackendChoice::kType1) {
      return error("--iommufd-fd and --iommu-backend=type1 exclude each other; drop one");
    }
    cfg.iommufd_fd = int(iommufd_fd);
    cfg.iommu_backend = iommu::BackendChoice::kIommufd;
  }
  if (!cfg.dma.mocks.empty()) {
    if (cfg.iommufd_fd < 0) {
      return error("--device mock needs --iommufd-fd: the mock device lives on the iommufd that created it");
    }
    if (cfg.dma.mocks.size() > 1) return error("--device mock: one mock device per VM");
  }
  if (cfg.viommu) {
    if (cfg.iommu_backend == iommu::BackendChoice::kType1) {
      return error("--viommu needs --iommu-backend=iommufd (or auto): the guest's domains are iommufd IOASes, "
                   "which the type1 container cannot provide");
    }
    if (!cfg.dma.mocks.empty()) return error("--viommu and --device mock exclude each other; drop one");
    if (cfg.dma.any_fault()) {
      return error("--viommu with a dma=fault region: fault-driven DMA behind the virtio-iommu is not built yet; "
                   "use dma=pin regions (the default) with --viommu");
    }
    cfg.iommu_backend = iommu::BackendChoice::kIommufd;
  }
  if (auto s = check_readable("kernel", cfg.kernel); !s) return error(s.error().message());
  if (!cfg.initrd.empty()) {
    if (auto s = check_readable("initrd", cfg.initrd); !s) return error(s.error().message());
  }
  result.action = CliResult::Action::kRun;
  result.config = std::move(cfg);
  return result;
}

}  // namespace pinless::vmm
