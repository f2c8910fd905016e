// VmConfig: everything `pinless run` needs, as plain data, and the command-line parser that
// produces it. Parsing is a pure function of the arguments and the host limits (unit-tested);
// every bad input yields one line naming the problem and the fix. Thread-compatible values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pinless/base/result.h"
#include "pinless/base/seccomp.h"
#include "pinless/base/types.h"
#include "pinless/iommu/backend_select.h"
#include "pinless/vmm/cli/dma_config.h"
#include "pinless/vmm/kvm/vm_state.h"
#include "pinless/vmm/memory/guest_memory.h"

namespace pinless::vmm {

constexpr const char* kDefaultCmdline = "console=ttyS0 reboot=k panic=-1 quiet";
constexpr uint64_t kDefaultMemory = 512 * kMiB;
constexpr uint64_t kMinMemory = 64 * kMiB;
constexpr uint32_t kMaxCpus = 64;

struct VmConfig {
  enum class Serial { kStdio, kFile, kOff };

  std::string kernel;
  std::string initrd;  // empty = none
  std::string cmdline = kDefaultCmdline;
  uint32_t cpus = 1;
  MemoryConfig memory{kDefaultMemory, false, false};
  Serial serial = Serial::kStdio;
  std::string serial_file;
  bool timeline = false;
  std::string timeline_file;  // empty = stderr
  std::string log_level = "warn";
  ExitStatusMode exit_status = ExitStatusMode::kGuest;
  // VFIO passthrough (--device vfio,...): one entry per device, host BDF or cdev path.
  struct VfioDevice {
    std::string host;  // DDDD:BB:DD.F (normalised), or empty
    std::string path;  // /dev/vfio/devices/vfioN, or empty
  };
  std::vector<VfioDevice> vfio_devices;
  iommu::BackendChoice iommu_backend = iommu::BackendChoice::kAuto;  // --iommu-backend
  int iommufd_fd = -1;  // --iommufd-fd N: an iommufd passed in by a manager
  DmaConfig dma;        // --ram-region, --dma-fallback, --pin-limit, --device mock
  // --viommu: a virtio-iommu at 00:01.0 with every function on bus 0 behind it (docs/viommu.md).
  bool viommu = false;
  // --api-socket PATH: the control API (docs/api.md); empty = none.
  std::string api_socket;
  // --seccomp on|log|off: per-thread syscall filters once the guest runs (docs/seccomp.md).
  seccomp::Mode seccomp = seccomp::Mode::kTrap;
  // --seccomp-selftest vcpu|loop: that thread makes a forbidden syscall (tests); empty = none.
  std::string seccomp_selftest;
  // Whether any device does DMA into guest RAM (VFIO or mock).
  bool has_dma_devices() const { return !vfio_devices.empty() || !dma.mocks.empty(); }
};

struct HostLimits {
  uint64_t memory_bytes = 0;  // physical RAM of the host
};
// The running host's limits (sysconf).
HostLimits host_limits();

// `pinless ctl`: one request to a running pinless's control API.
struct CtlConfig {
  std::string api_socket;
  std::string command;        // info, counters, timeline, pause, resume, shutdown, stop
  bool json = false;          // print the response body as it came
  uint64_t timeout_s = 0;     // shutdown: the guest's time to power off (0: the server's default)
  // ram-region: the region's RAM offset (a size: 0, 256M, 0x10000000) and what changes.
  std::string offset;
  std::string dma;            // "pin", "fault"; empty: unchanged
  uint64_t premap = 0;        // 0: unchanged
  std::string window;         // empty: unchanged
};

struct CliResult {
  enum class Action { kRun, kCheck, kCtl, kHelp, kVersion, kError };
  Action action = Action::kError;
  VmConfig config;   // kRun
  CtlConfig ctl;     // kCtl
  bool check_json = false;  // kCheck: --json
  std::string text;  // kHelp: the help text; kError: the one-line error
};

// `args` excludes argv[0]. Never prints, never exits.
CliResult parse_cli(const std::vector<std::string>& args, const HostLimits& host);

// Parses the value of --memory ("size=S[,hugepages=on|off][,thp=on|off]" or just "S").
// On failure the error's message() is the one line to print; *out is untouched.
[[nodiscard]] Status parse_memory_option(const std::string& value, const HostLimits& host, MemoryConfig* out);
// Parses the value of --device ("vfio,host=DDDD:BB:DD.F" or "vfio,path=/dev/vfio/devices/vfioN").
// On failure the error's message() is the one line to print.
[[nodiscard]] Status parse_device_option(const std::string& value, VmConfig* out);

}  // namespace pinless::vmm
