// pinless_fault_mock: end-to-end proof of pinless's fault-driven DMA on the real kernel.
//
//   pinless_fault_mock PINLESS KERNEL INITRD SCRATCH [forward|aligned|hint|reclaim|limit|switch ...]
//
// Unlike fault_engine_mock (pinless's engine linked in), this drives the pinless binary as a
// manager would: it opens /dev/iommu, creates the IOMMUFD_TEST mock device on its own "home"
// IOAS, and runs `pinless run --iommufd-fd FD --device mock,...` on that shared fd with the
// idle guest test. pinless moves the mock device onto its own fault-capable HWPT; this program
// then plays the device (TRIGGER_IOPF) and checks the result with the kernel's view only:
//   - MD_CHECK_MAP (the mock page table of pinless's HWPT, compared page by page with
//     pinless's guest RAM, which it maps through pinless's memfd from /proc/PID/fd),
//   - IOMMU_IOAS_COPY out of pinless's IOAS into the home IOAS ("is this IOVA range mapped
//     in pinless's IOAS?": ENOENT if not; home has no device then, so a copy pins nothing),
//   - VmPin of pinless (iommufd charges pins to the process that maps),
//   - after SIGTERM: pinless's objects gone (ENOENT), the mock device back on home,
//   - the timeline JSON's "dma" figures against what this program did.
// One pinless run per window policy (forward, aligned, hint); each run's guest RAM (512M) is
// split into a pin region and four fault regions (premap 1, 16, 512 for the touch and window
// checks, premap 1 for the burst). Two more runs put a --pin-limit on one fault region:
// "reclaim" (reclaim=on: the least recently faulted windows make room) and "limit"
// (reclaim=off: a window over the cap is refused). The "switch" run (128M of RAM, two pin
// regions, no fault region at start) switches region 1 to fault at run time through the
// control API (`pinless ctl ram-region --dma fault`: pinless sets fault mode up then, on a new
// HWPT), serves a fault there, and switches it back (`--dma pin`), checking the IOAS, the
// HWPT, VmPin and `pinless ctl counters --json` after each step. One PASS/FAIL line per
// check; "N passed, N failed" at the end; exit 1 if any failed, 77 without /dev/iommu or
// IOMMUFD_TEST.
// Uses no pinless library (uapi headers only).
#include <sys/stat.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "pinless_fault_mock.h"

using nlohmann::json;

namespace pinless::testbed::fault_mock {
namespace {
int g_passed = 0, g_failed = 0;
}  // namespace

[[gnu::format(printf, 3, 4)]] bool check(bool ok, const std::string& name, const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  std::printf("%s %s: %s\n", ok ? "PASS" : "FAIL", name.c_str(), msg);
  std::fflush(stdout);
  (ok ? g_passed : g_failed)++;
  return ok;
}

int passed() { return g_passed; }
int failed() { return g_failed; }

[[noreturn, gnu::format(printf, 1, 2)]] void abort_run(const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  throw Abort{msg};
}

void Run::spawn(const std::string& pinless, const std::string& kernel, const std::string& initrd, const std::string& dir) {
  timeline_ = dir + "/" + policy_ + ".json";
  std::remove(timeline_.c_str());
  std::string cmdline = "console=ttyS0 reboot=k panic=-1 quiet";
  if (const char* tb = std::getenv("PINLESS_TESTBED"); tb && std::string(tb) == "1") cmdline += " noxsave";
  cmdline += " pinless.test=idle";
  std::vector<std::string> args = {pinless, "run", "--kernel", kernel, "--initrd", initrd, "--cmdline", cmdline,
                                   "--memory", "size=" + std::to_string(ram_size_ / kMiB) + "M", "--iommufd-fd",
                                   std::to_string(fd_), "--device",
                                   "mock,idev=" + std::to_string(idev_) + ",stdev=" + std::to_string(stdev_) +
                                       ",home=" + std::to_string(home_)};
  for (const Region& g : regions_) {
    args.push_back("--ram-region");
    args.push_back(g.spec());
  }
  if (pin_limit_) {
    args.push_back("--pin-limit");
    args.push_back(std::to_string(pin_limit_ / kMiB) + "M,reclaim=" + (policy_ == "reclaim" ? "on" : "off"));
  }
  pinless_path_ = pinless;
  api_socket_ = dir + "/" + policy_ + ".sock";
  std::remove(api_socket_.c_str());
  args.insert(args.end(), {"--timeline=" + timeline_, "--log-level", "info", "--api-socket", api_socket_});
  std::string shown;
  for (const auto& a : args) shown += (shown.empty() ? "" : " ") + (a.find(' ') != std::string::npos ? "'" + a + "'" : a);
  std::printf("# %s: %s\n", policy_.c_str(), shown.c_str());
  std::fflush(stdout);

  if (std::string e = pinless_.start(args, dir + "/" + policy_ + ".out", dir + "/" + policy_ + ".err"); !e.empty())
    abort_run("%s", e.c_str());
}

void Run::stop() {
  uint64_t ms = 0;
  bool gone = pinless_.terminate(kExitMs, &ms);
  int st = pinless_.status();
  check(gone && WIFEXITED(st) && WEXITSTATUS(st) == 143, name("sigterm"),
        "pinless %s %llu ms after SIGTERM (want exit status 143 within %d ms)",
        gone ? pinless_.status_text().c_str() : "still running (SIGKILLed)", ull(ms), kExitMs);
}

uint64_t num(const json& j) { return j.get<uint64_t>(); }

// Pages of region g this program expects mapped now.
uint64_t pages_in(const std::vector<uint8_t>& model, const Region& g) {
  return uint64_t(std::count(model.begin() + long(g.first_page()), model.begin() + long(g.first_page() + g.pages()), 1));
}

std::string wait_text(int st) {
  if (st == -1) return std::string("system(): ") + err();
  if (WIFEXITED(st)) return "exit status " + std::to_string(WEXITSTATUS(st));
  if (WIFSIGNALED(st)) return "killed by signal " + std::to_string(WTERMSIG(st));
  return "wait status " + std::to_string(st);
}

std::string last_line(const std::string& path) {
  std::string s = read_file(path);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  size_t nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

// dma.regions (of the exit timeline or of `pinless ctl counters --json`) against the regions
// as this program set them up or switched them, and the pages it expects mapped in each. *got
// describes what pinless said, with "(want ...)" at each region that differs.
bool regions_match(const json& rs, const std::vector<Region>& regions, const std::vector<uint8_t>& model,
                   std::string* got) {
  bool ok = rs.size() == regions.size();
  for (size_t i = 0; i < rs.size(); ++i) {
    const json& r = rs[i];
    std::string dma = r.at("dma").get<std::string>();
    std::string what = dma;
    if (r.contains("premap")) what += " premap " + std::to_string(num(r.at("premap")));
    if (r.contains("window")) what += " " + r.at("window").get<std::string>();
    std::string want = "no such region";
    bool one = false;
    if (i < regions.size()) {
      const Region& g = regions[i];
      uint64_t bytes = pages_in(model, g) * kPage;
      one = std::strtoull(r.at("gpa").get<std::string>().c_str(), nullptr, 0) == g.gpa && num(r.at("size")) == g.size &&
            dma == (g.fault ? "fault" : "pin") && num(r.at("pinned_bytes")) == bytes &&
            (!g.fault || (r.contains("premap") && num(r.at("premap")) == g.premap && r.contains("window") &&
                          r.at("window") == g.window));
      want = std::to_string(g.size / kMiB) + "M " +
             (g.fault ? "fault premap " + std::to_string(g.premap) + " " + g.window : "pin") + " pinned " +
             std::to_string(bytes);
    }
    char buf[512];
    std::snprintf(buf, sizeof buf, "%s%s+%lluM %s pinned %llu%s", got->empty() ? "" : "; ",
                  r.at("gpa").get<std::string>().c_str(), ull(num(r.at("size")) / kMiB), what.c_str(),
                  ull(num(r.at("pinned_bytes"))), one ? "" : (" (want " + want + ")").c_str());
    *got += buf;
    ok = ok && one;
  }
  return ok;
}

void Run::timeline() {
  json t;
  try {
    t = json::parse(read_file(timeline_));
  } catch (const json::exception& e) {
    check(false, name("timeline"), "%s: %s", timeline_.c_str(), e.what());
    return;
  }
  try {
    const json& d = t.at("dma");
    const json& f = d.at("faults");
    auto n = [&](const char* key) { return ull(num(f.at(key))); };
    bool ok = d.at("backend") == "iommufd" && n("records") == groups_ && n("groups") == groups_ &&
              n("invalid_groups") == invalid_ && n("over_limit") == over_limit_ && n("pages_mapped") == fault_pages_ &&
              n("reclaims") == reclaims_ && n("pages_reclaimed") == pages_reclaimed_;
    check(ok, name("timeline-faults"),
          "dma.backend %s; faults: records %llu, groups %llu (this program triggered %llu groups of one record), "
          "invalid_groups %llu (want %llu), over_limit %llu (want %llu), pages_mapped %llu (want %llu), reclaims %llu "
          "(want %llu), pages_reclaimed %llu (want %llu)",
          d.at("backend").get<std::string>().c_str(), n("records"), n("groups"), ull(groups_), n("invalid_groups"),
          ull(invalid_), n("over_limit"), ull(over_limit_), n("pages_mapped"), ull(fault_pages_), n("reclaims"),
          ull(reclaims_), n("pages_reclaimed"), ull(pages_reclaimed_));
    // Every group this program raised that was not refused needed a window of its own, and no
    // two of those windows were ever adjacent in one batch: one IOAS_MAP each.
    check(n("maps") == groups_ - invalid_, name("timeline-maps"), "faults.maps %llu (want %llu, one per answered group)",
          n("maps"), ull(groups_ - invalid_));
    uint64_t pinned = model_pages_ * kPage, peak = peak_pages_ * kPage;
    check(num(d.at("pinned_bytes")) == pinned && num(d.at("pinned_peak_bytes")) == peak &&
              num(d.at("pin_limit_bytes")) == pin_limit_,
          name("timeline-pinned"), "pinned_bytes %llu (want %llu), pinned_peak_bytes %llu (want %llu), pin_limit_bytes %llu (want %llu)",
          ull(num(d.at("pinned_bytes"))), ull(pinned), ull(num(d.at("pinned_peak_bytes"))), ull(peak),
          ull(num(d.at("pin_limit_bytes"))), ull(pin_limit_));
    const json& rs = d.at("regions");
    std::string got;
    bool rok = regions_match(rs, regions_, model_, &got);
    check(rok, name("timeline-regions"), "%zu regions (want %zu): %s", rs.size(), regions_.size(), got.c_str());
  } catch (const json::exception& e) {
    check(false, name("timeline"), "%s: %s (dma: %s)", timeline_.c_str(), e.what(),
          t.contains("dma") ? t["dma"].dump().substr(0, 400).c_str() : "missing");
  }
}

int Run::ctl(const std::string& args, const std::string& out_path) const {
  const std::string cmd = "'" + pinless_path_ + "' ctl --api-socket '" + api_socket_ + "' " + args + " >'" + out_path +
                          "' 2>'" + out_path + ".err'";
  return std::system(cmd.c_str());
}

// What `pinless ctl counters --json` says about DMA while pinless runs: the regions as this
// program set them up or switched them (policy, premap, window, pinned bytes per the model) and
// the fault groups served so far; and the MAP/UNMAP calls pinless made for region 1 over its
// life (its static pin, fault windows, switches), which this program knows exactly. The
// human-readable `pinless ctl counters` is printed as a comment for the log.
void Run::counters(const std::string& what, uint64_t map_calls, uint64_t unmap_calls) {
  const std::string out = api_socket_ + "." + what + ".json";
  int rc = ctl("counters --json", out);
  if (rc != 0) {
    check(false, name(what), "pinless ctl counters --json: %s; stderr: %s", wait_text(rc).c_str(),
          file_tail(out + ".err", 3).c_str());
    return;
  }
  json j;
  try {
    j = json::parse(read_file(out));
    const json& d = j.at("dma");
    const json& rs = d.at("regions");
    std::string got;
    bool rok = regions_match(rs, regions_, model_, &got);
    uint64_t groups = num(d.at("faults").at("groups"));
    const json& r1 = rs.at(1);
    uint64_t maps = num(r1.at("map_calls")), unmaps = num(r1.at("unmap_calls"));
    check(rok && groups == groups_ && maps == map_calls && unmaps == unmap_calls, name(what),
          "ctl counters --json: dma.faults.groups %llu (want %llu, the groups this program triggered); %zu regions "
          "(want %zu): %s; region 1: %llu MAP calls in %llu us (want %llu), %llu UNMAP calls in %llu us (want %llu), "
          "policy_switches %llu",
          ull(groups), ull(groups_), rs.size(), regions_.size(), got.c_str(), ull(maps), ull(num(r1.at("map_us"))),
          ull(map_calls), ull(unmaps), ull(num(r1.at("unmap_us"))), ull(unmap_calls),
          ull(num(d.at("policy_switches"))));
    const std::string text = api_socket_ + "." + what + ".txt";
    if (ctl("counters", text) == 0) {
      std::string all = read_file(text);
      for (size_t at = 0, nl; at < all.size(); at = nl + 1) {
        nl = all.find('\n', at);
        if (nl == std::string::npos) nl = all.size();
        std::printf("#   %s\n", all.substr(at, nl - at).c_str());
      }
    }
  } catch (const json::exception& e) {
    check(false, name(what), "ctl counters --json (%s): %s (dma: %s)", out.c_str(), e.what(),
          j.is_object() && j.contains("dma") ? j["dma"].dump().substr(0, 400).c_str() : "missing");
  }
}

bool parse_ready(const std::string& line, uint32_t* ioas, uint32_t* hwpt, uint32_t* fault) {
  const char* tag = std::strstr(line.c_str(), "dma-ready:");
  const char* at = tag ? std::strstr(tag, "ioas=") : nullptr;
  return at && std::sscanf(at, "ioas=%u hwpt=%u fault=%u", ioas, hwpt, fault) == 3;
}

std::string Run::wait_fault_ready(int timeout_ms) {
  std::string found;
  poll_until(
      [&] {
        std::istringstream in(read_file(pinless_.err_path()));
        for (std::string line; std::getline(in, line);) {
          uint32_t ioas = 0, hwpt = 0, fault = 0;
          if (parse_ready(line, &ioas, &hwpt, &fault) && hwpt != 0) found = line;
        }
        return !found.empty() || !pinless_.running();
      },
      timeout_ms);
  return found;
}

void Run::execute(const std::string& pinless, const std::string& kernel, const std::string& initrd, const std::string& dir) {
  setup_mock();
  spawn(pinless, kernel, initrd, dir);
  uint64_t t0 = now_us();
  std::string line = pinless_.wait_line(pinless_.err_path(), "dma-ready:", kReadyMs);
  if (line.empty())
    abort_run("no 'dma-ready:' on pinless's stderr within %d ms (%s); stderr tail:\n%s", kReadyMs,
              pinless_.status_text().c_str(), file_tail(pinless_.err_path(), 15).c_str());
  if (!parse_ready(line, &ioas_, &hwpt_, &fault_))
    abort_run("cannot parse 'ioas=N hwpt=N fault=N' from: %s", line.c_str());
  // With a fault region pinless names its fault HWPT and queue; without one it has neither.
  bool faults = std::any_of(regions_.begin(), regions_.end(), [](const Region& g) { return g.fault; });
  check(faults ? hwpt_ && fault_ : !hwpt_ && !fault_, name("dma-ready"),
        "after %llu ms: ioas %u, hwpt %u, fault %u (want %s)", ull((now_us() - t0) / 1000), ioas_, hwpt_, fault_,
        faults ? "a fault HWPT and queue" : "hwpt 0 and fault 0: no fault region at start");
  std::string error;
  ram_ = pinless_.map_memfd("pinless-guest-ram", ram_size_, &error);
  if (!ram_) abort_run("pinless's guest RAM: %s", error.c_str());
  line = pinless_.wait_line(pinless_.out_path(), "idle: up", kGuestMs);
  if (line.empty())
    abort_run("the guest did not print 'idle: up' within %d ms (%s); console tail:\n%s\nstderr tail:\n%s", kGuestMs,
              pinless_.status_text().c_str(), file_tail(pinless_.out_path(), 8).c_str(),
              file_tail(pinless_.err_path(), 8).c_str());
  std::printf("# %s: guest up after %llu ms\n", policy_.c_str(), ull((now_us() - t0) / 1000));
  device_moved();
  if (policy_ == "switch") {
    pinned_at_start();  // no fault HWPT yet for MD_CHECK_MAP (dma-ready said hwpt 0)
  } else {
    check_pin_region();
  }
  if (policy_ == "switch") {
    if (!pin_to_fault(regions_[1])) abort_run("region 1 is not in fault mode: the checks after pin-to-fault need it");
    fault_after_switch(regions_[1]);
    counters("counters-after-switch", 2, 1);  // the pin at start and the fault's window; the pin
    fault_to_pin(regions_[1]);
    counters("counters-after-switch-back", 3, 2);  // + the whole pin; + the window
  } else if (policy_ == "reclaim") {
    reclaim(regions_[1]);
  } else if (policy_ == "limit") {
    limit(regions_[1]);
  } else {
    for (size_t i = 1; i <= 3; ++i) {
      touch(regions_[i]);
      windows(regions_[i]);
    }
    premap_change(regions_[1]);
    burst(regions_[4]);
    outside_ram(regions_[4]);
  }
  ioas_state();
  stop();
  released();
  back_home();
  timeline();
}

}  // namespace pinless::testbed::fault_mock

using namespace pinless::testbed;
using namespace pinless::testbed::fault_mock;

int main(int argc, char** argv) {
  g_prog = "pinless_fault_mock";
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s PINLESS KERNEL INITRD SCRATCH_DIR [forward|aligned|hint|reclaim|limit|switch ...]\n",
                 argv[0]);
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (!exists("/dev/iommu")) skip("no /dev/iommu: kernel without CONFIG_IOMMUFD");
  {
    Fd probe(::open("/dev/iommu", O_RDWR | O_CLOEXEC));
    iommu_test_cmd c{};
    c.size = sizeof c;
    c.op = IOMMU_TEST_OP_MD_CHECK_MAP;
    if (probe.valid() && ioctl(probe.get(), IOMMU_TEST_CMD, &c) < 0 && errno == ENOTTY)
      skip("IOMMU_TEST_CMD is ENOTTY: kernel without CONFIG_IOMMUFD_TEST");
  }
  for (int i = 1; i <= 3; ++i)
    if (!exists(argv[i])) fail("%s: no such file", argv[i]);
  std::string dir = argv[4];
  ::mkdir(dir.c_str(), 0755);
  std::vector<std::string> policies;
  for (int i = 5; i < argc; ++i) policies.push_back(argv[i]);
  if (policies.empty()) policies = {"forward", "aligned", "hint", "reclaim", "limit", "switch"};
  uint64_t t0 = now_us();
  for (const auto& p : policies) {
    Run run(p);
    try {
      run.execute(argv[1], argv[2], argv[3], dir);
    } catch (const Abort& a) {
      check(false, p + "/run", "%s", a.what.c_str());
    }
  }
  std::printf("# %s: %llu s\n", g_prog, ull((now_us() - t0) / 1000000));
  std::printf("%d passed, %d failed\n", passed(), failed());
  return failed() ? 1 : 0;
}
