// pinless: parse the command line, run the VM (run.h), report how it ended and the timeline,
// exit with the status of docs/guest-abi.md.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "run.h"
#include "pinless/base/log.h"
#include "pinless/vmm/api/ctl.h"
#include "pinless/vmm/check/host_check.h"
#include "pinless/vmm/check/host_probe.h"
#include "pinless/vmm/cli/config.h"
#include "pinless/vmm/timeline/timeline.h"

using namespace pinless;
using namespace pinless::vmm;

namespace {
void emit_timeline(const VmConfig& config, const Timeline& timeline) {
  if (!config.timeline) return;
  std::string json = timeline.to_json();
  if (config.timeline_file.empty()) {
    std::fputs(json.c_str(), stderr);
    return;
  }
  std::ofstream out(config.timeline_file, std::ios::trunc);
  out << json;
  if (!out) std::fprintf(stderr, "pinless: cannot write the timeline to %s\n", config.timeline_file.c_str());
}
}  // namespace

int main(int argc, char** argv) {
  Timeline timeline;  // process_start = 0
  std::vector<std::string> args(argv + 1, argv + argc);
  CliResult cli = parse_cli(args, host_limits());
  switch (cli.action) {
    case CliResult::Action::kHelp:
    case CliResult::Action::kVersion:
      std::fputs(cli.text.c_str(), stdout);
      return 0;
    case CliResult::Action::kError:
      std::fprintf(stderr, "pinless: %s\n", cli.text.c_str());
      return 1;
    case CliResult::Action::kCheck: {
      check::HostFacts facts = check::probe_host(linux_sys(), check::ProbeOptions{});
      check::Report report = check::assess(facts);
      std::string out = cli.check_json ? check::to_json(report, facts) : check::to_text(report);
      std::fputs(out.c_str(), stdout);
      return check::exit_code(report);
    }
    case CliResult::Action::kCtl:
      return api::run_ctl(cli.ctl);
    case CliResult::Action::kRun:
      break;
  }
  const VmConfig& config = cli.config;
  set_log_level(config.log_level);
  timeline.mark("config_parsed");

  auto run = run_microvm(config, timeline);
  int exit_status = kExitFailed;
  if (run) {
    exit_status = run->exit_status;
    if (std::string line = describe(*run, config.exit_status); !line.empty()) {
      std::fprintf(stderr, "pinless: %s\n", line.c_str());
    }
  } else {
    std::fprintf(stderr, "pinless: %s\n", run.error().message().c_str());
  }
  timeline.mark("process_exit");
  emit_timeline(config, timeline);
  return exit_status;
}
