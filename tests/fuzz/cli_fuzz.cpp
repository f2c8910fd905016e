// libFuzzer target: a pinless command line. Byte 0 picks the first word (run, check, ctl,
// --help, or none: the words come raw), byte 1 the host's RAM (0: unknown, else N * 256 MiB);
// the rest is split at NUL and newline bytes into the other words. They go to parse_cli, and
// each word also goes straight to every option-value parser (sizes, --memory, --device,
// --ram-region, --pin-limit, mock devices). Checked on every input: no crash, no sanitizer
// report, no escaping exception; an error is one non-empty line (a parser's failure leaves
// --memory's output untouched); an accepted `run` config keeps the invariants docs/dma.md and
// config.h state (1..64 vCPUs; memory >= 64M, a multiple of 2M, within the host, not both
// hugepages and thp; --ram-regions sorted, disjoint, 4K-aligned, non-empty and inside RAM;
// devices given once each by one of host/path; mock and viommu rules; a readable kernel); an
// accepted `ctl` names a documented command with its options; a parsed size prints and parses
// back to itself. Built and run by scripts/fuzz.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <source_location>
#include <string>
#include <vector>

#include "pinless/base/size.h"
#include "pinless/vmm/cli/config.h"
#include "pinless/vmm/cli/dma_config.h"

using namespace pinless;
using namespace pinless::vmm;

namespace {

void check(bool ok, std::source_location at = std::source_location::current()) {
  if (ok) return;
  std::fprintf(stderr, "check failed at line %u\n", unsigned(at.line()));
  std::abort();
}

bool one_line(const std::string& text) { return !text.empty() && text.find('\n') == std::string::npos; }

template <typename T>
void check_error(const Result<T>& r, std::source_location at = std::source_location::current()) {
  check(!r && one_line(r.error().message()), at);
}

void check_memory(const MemoryConfig& m, const HostLimits& host) {
  check(m.size >= kMinMemory && m.size % GuestMemory::kHugePageSize == 0);
  check(host.memory_bytes == 0 || m.size <= host.memory_bytes);
  check(!(m.hugepages && m.thp));
}

void check_regions(const DmaConfig& dma, uint64_t memory_size) {
  for (size_t i = 0; i < dma.regions.size(); ++i) {
    const auto& r = dma.regions[i];
    check(r.size != 0 && r.offset % kPageSize == 0 && r.size % kPageSize == 0);
    check(r.offset < memory_size && r.size <= memory_size - r.offset);
    check(i == 0 || dma.regions[i - 1].end() <= r.offset);
    check(r.fault_policy.premap_pages >= 1 && r.fault_policy.premap_pages <= iommu::kMaxPremapPages);
    if (!r.fault) check(r.fault_policy.premap_pages == iommu::FaultPolicy{}.premap_pages &&
                        r.fault_policy.window == iommu::FaultPolicy{}.window);
  }
}

void check_devices(const VmConfig& c) {
  for (size_t i = 0; i < c.vfio_devices.size(); ++i) {
    const auto& d = c.vfio_devices[i];
    check(d.host.empty() != d.path.empty());
    check(d.host.empty() || (d.host.size() == 12 && d.host[4] == ':' && d.host[7] == ':' && d.host[10] == '.'));
    for (size_t j = 0; j < i; ++j) {
      check(d.host.empty() || d.host != c.vfio_devices[j].host);
      check(d.path.empty() || d.path != c.vfio_devices[j].path);
    }
  }
  for (const auto& m : c.dma.mocks) check(m.idev != 0 && m.stdev != 0 && m.home != 0);
}

void check_run(const VmConfig& c, const HostLimits& host) {
  check(c.cpus >= 1 && c.cpus <= kMaxCpus);
  check_memory(c.memory, host);
  check(!c.kernel.empty() && ::access(c.kernel.c_str(), R_OK) == 0);
  check(c.initrd.empty() || ::access(c.initrd.c_str(), R_OK) == 0);
  check((c.serial == VmConfig::Serial::kFile) == !c.serial_file.empty());
  check(std::set<std::string>{"error", "warn", "info", "debug", "trace"}.count(c.log_level) == 1);
  check_regions(c.dma, c.memory.size);
  check_devices(c);
  check(c.iommufd_fd < 0 || c.iommu_backend == iommu::BackendChoice::kIommufd);
  check(c.dma.mocks.size() <= 1 && (c.dma.mocks.empty() || c.iommufd_fd >= 0));
  if (c.viommu) {
    check(c.iommu_backend == iommu::BackendChoice::kIommufd && c.dma.mocks.empty() && !c.dma.any_fault());
  }
}

void check_ctl(const CtlConfig& c) {
  static const std::set<std::string> kCommands = {"info",   "counters", "timeline", "pause",
                                                  "resume", "shutdown", "stop",     "ram-region"};
  check(kCommands.count(c.command) == 1);
  check(c.timeout_s == 0 || (c.command == "shutdown" && c.timeout_s <= 3600));
  check(c.premap <= iommu::kMaxPremapPages);
  if (c.command != "ram-region") {
    check(c.offset.empty() && c.dma.empty() && c.premap == 0 && c.window.empty());
    return;
  }
  auto offset = parse_size(c.offset);  // rewritten as a decimal byte count
  check(offset && std::to_string(*offset) == c.offset);
  check(!c.dma.empty() || c.premap != 0 || !c.window.empty());
  check(c.dma.empty() || c.dma == "pin" || c.dma == "fault");
  check(c.dma != "pin" || (c.premap == 0 && c.window.empty()));
}

// One word through every option-value parser, as if it followed each option.
void parse_values(const std::string& word, const HostLimits& host, VmConfig* cfg) {
  if (auto size = parse_size(word)) {
    check(parse_size(format_size(*size)) == *size && parse_size(format_hex(*size)) == *size);
  } else {
    check_error(size);
  }
  MemoryConfig m{1, true, true};  // impossible values: a failed parse must leave them
  if (auto st = parse_memory_option(word, host, &m)) {
    check_memory(m, host);
  } else {
    check_error(st);
    check(m.size == 1 && m.hugepages && m.thp);
  }
  const size_t devices = cfg->vfio_devices.size() + cfg->dma.mocks.size();
  if (auto st = parse_device_option(word, cfg)) {
    check(cfg->vfio_devices.size() + cfg->dma.mocks.size() == devices + 1);
    check_devices(*cfg);
  } else {
    check_error(st);
  }
  DmaConfig mock;
  if (auto st = parse_mock_device_option(word, &mock)) {
    check(word.starts_with("mock,") && mock.mocks.size() == 1);  // "mock,idev=I,stdev=S,home=H"
  } else {
    check_error(st);
  }
  if (auto st = parse_ram_region_option(word, &cfg->dma); !st) check_error(st);
  DmaConfig limit;
  if (auto st = parse_pin_limit_option(word, &limit)) {
    check(limit.pin_limit != 0);
  } else {
    check_error(st);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char* const kFirst[] = {"run", "check", "ctl", "--help"};
  if (size < 2) return 0;
  std::vector<std::string> args;
  if (data[0] % 5 < 4) args.emplace_back(kFirst[data[0] % 5]);
  const HostLimits host{uint64_t(data[1]) * 256 * kMiB};
  std::string word;
  for (size_t i = 2; i < size; ++i) {
    if (data[i] == '\0' || data[i] == '\n') {
      args.push_back(std::move(word));
      word.clear();
    } else {
      word += char(data[i]);
    }
  }
  if (size > 2) args.push_back(std::move(word));

  CliResult r = parse_cli(args, host);
  switch (r.action) {
    case CliResult::Action::kRun: check_run(r.config, host); break;
    case CliResult::Action::kCtl: check_ctl(r.ctl); break;
    case CliResult::Action::kCheck: break;
    case CliResult::Action::kHelp:
    case CliResult::Action::kVersion: check(!r.text.empty()); break;
    case CliResult::Action::kError: check(one_line(r.text)); break;
  }

  // Every word as an option value; the regions collected on the way are then checked
  // against RAM the way parse_cli does once --memory is known.
  VmConfig cfg;
  for (const auto& a : args) parse_values(a, host, &cfg);
  const uint64_t ram = host.memory_bytes != 0 ? host.memory_bytes : kDefaultMemory;
  if (auto st = check_ram_regions(ram, &cfg.dma)) {
    check_regions(cfg.dma, ram);
  } else {
    check_error(st);
  }
  return 0;
}
