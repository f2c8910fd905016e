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
//
// Files: this header (constants, the guest RAM layout, one Run per pinless process);
// pinless_fault_mock_kernel.cpp (the kernel's view: mock device, IOAS probes, VmPin, faults);
// pinless_fault_mock_checks.cpp (the checks of a run); pinless_fault_mock.cpp (spawn, stop,
// `pinless ctl`, the counters and timeline checks, main).
#pragma once

#include <sys/ioctl.h>

#include <string>
#include <vector>

#include "pinless/iommu/uapi/iommufd_test.h"
#include "pinless_process.h"
#include "testbed_util.h"

namespace pinless::testbed::fault_mock {

inline constexpr uint64_t kPage = 4096;
inline constexpr uint64_t kMiB = 1 << 20;
// Guest RAM (Run::ram_size_): 512M, and 128M for the switch run (pinning all of it is cheaper).
inline constexpr uint64_t kDefaultRamSize = 512 * kMiB, kSwitchRamSize = 128 * kMiB;
inline constexpr uint64_t kPinStart = MOCK_APERTURE_START;  // the pin region 0:64M, mapped from 16M on
inline constexpr uint64_t kPinEnd = 64 * kMiB;
inline constexpr uint64_t kOutsideRam = 1ull << 30;             // in the mock aperture, not guest RAM
inline constexpr uint64_t kTouchOffset = 8 * kMiB;              // 2 MiB aligned inside each region
inline constexpr uint64_t kTouchBytes = 4 * kMiB;
inline constexpr uint64_t kProbeOffset = 32 * kMiB + 5 * kPage + 0x123;  // unaligned on purpose
// vm.ram-region (the control API, through `pinless ctl`): region 1's premap grows to this,
// and a fault at kChangeOffset (untouched by the checks before) must map the new window.
inline constexpr uint64_t kChangedPremap = 64, kChangeOffset = 48 * kMiB + 3 * kPage;
inline constexpr unsigned kBurst = 5000;
inline constexpr uint64_t kBurstOffset = 4 * kMiB, kBurstStride = 3;  // pages 0, 3, 6, ...: never adjacent
// The pin-limit runs: 48 MiB static + room for 16 aligned 64 KiB windows.
inline constexpr uint64_t kPinLimit = 49 * kMiB, kLimitPremap = 16, kRoomWindows = 16;
// The switch run: region 1 goes from pin to fault with this premap (aligned windows), and a
// fault at this offset in it (unaligned on purpose) must map exactly its aligned window.
inline constexpr uint64_t kSwitchPremap = 16, kSwitchFaultOffset = 8 * kMiB + 5 * kPage + 0x123;
inline constexpr int kReadyMs = 60000, kGuestMs = 180000, kFaultMs = 10000, kBurstMs = 120000, kExitMs = 60000;
inline constexpr uint32_t kRW = IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE;


inline unsigned long long ull(uint64_t v) { return static_cast<unsigned long long>(v); }

// One PASS/FAIL line; counted for the summary.
[[gnu::format(printf, 3, 4)]] bool check(bool ok, const std::string& name, const char* fmt, ...);
int passed();
int failed();

// Ends the current run: caught in main, reported as one FAIL line.
struct Abort {
  std::string what;
};
[[noreturn, gnu::format(printf, 1, 2)]] void abort_run(const char* fmt, ...);

struct Region {
  uint64_t gpa, size;
  bool fault;
  uint64_t premap;
  std::string window;
  uint64_t first_page() const { return gpa / kPage; }
  uint64_t pages() const { return size / kPage; }
  std::string spec() const {
    std::string s = (gpa ? std::to_string(gpa / kMiB) + "M" : "0") + ":" + std::to_string(size / kMiB) + "M,dma=" + (fault ? "fault" : "pin");
    if (fault) s += ",premap=" + std::to_string(premap) + ",window=" + window;
    return s;
  }
};

struct Span {  // pages [first, end) of guest RAM (global page numbers)
  uint64_t first, end;
  uint64_t count() const { return end - first; }
};

// The pages of a pin region pinless maps: all but what lies below the mock aperture.
inline Span pinned_part(const Region& g) {
  uint64_t end = g.first_page() + g.pages();
  return {std::min(std::max(g.first_page(), kPinStart / kPage), end), end};
}

// "ioas=N hwpt=N fault=N" of a 'dma-ready:' line of pinless's stderr.
bool parse_ready(const std::string& line, uint32_t* ioas, uint32_t* hwpt, uint32_t* fault);
// "exit status N" (or how else the shell of std::system ended), for messages.
std::string wait_text(int st);
// The last non-empty line of a file, without its newline ("" if none).
std::string last_line(const std::string& path);

// What a fault at `addr` in region g maps, as pinless's window policies define it (docs/dma.md,
// iommu/include/pinless/iommu/fault_window.h): forward = premap pages from the fault page,
// aligned = the naturally aligned premap block holding it, both clipped to the region; hint =
// the record's length, and the mock's records carry length 0, for which hint means forward.
Span expected_window(const Region& g, uint64_t addr);

std::string text(const std::vector<iommu_iova_range>& r);
bool same(const std::vector<iommu_iova_range>& a, const std::vector<iommu_iova_range>& b);
int destroy_errno(int fd, uint32_t id);

class Run {
 public:
  // kind: a window policy, "reclaim" / "limit" for the pin-limit runs, or "switch" (pin regions
  // only at start; region 1 switched to fault and back through the control API).
  explicit Run(std::string kind)
      : policy_(std::move(kind)),
        ram_size_(policy_ == "switch" ? kSwitchRamSize : kDefaultRamSize),
        model_(ram_pages(), 0) {
    if (policy_ == "switch") {
      regions_ = {{0, kPinEnd, false, 0, ""}, {64 * kMiB, 64 * kMiB, false, 0, ""}};
    } else if (policy_ == "reclaim" || policy_ == "limit") {
      regions_ = {{0, kPinEnd, false, 0, ""}, {64 * kMiB, 448 * kMiB, true, kLimitPremap, "aligned"}};
      pin_limit_ = kPinLimit;
    } else {
      regions_ = {{0, kPinEnd, false, 0, ""},
                  {64 * kMiB, 64 * kMiB, true, 1, policy_},
                  {128 * kMiB, 64 * kMiB, true, 16, policy_},
                  {192 * kMiB, 64 * kMiB, true, 512, policy_},
                  {256 * kMiB, 256 * kMiB, true, 1, policy_}};
    }
    for (const Region& g : regions_) {
      if (g.fault) continue;
      Span s = pinned_part(g);
      for (uint64_t p = s.first; p < s.end; ++p) set_model(p, true);
    }
    peak_pages_ = model_pages_;
  }
  ~Run() { teardown(); }
  void execute(const std::string& pinless, const std::string& kernel, const std::string& initrd, const std::string& dir);

 private:
  std::string name(const std::string& what) const { return policy_ + "/" + what; }
  uint64_t ram_pages() const { return ram_size_ / kPage; }
  // Pages the pin regions map now (pinned_part of each).
  uint64_t static_pages() const;
  iommu_test_cmd test_cmd(uint32_t op, uint32_t id) const;
  int test_ioctl(iommu_test_cmd& c) const { return ioctl(fd_, IOMMU_TEST_CMD, &c) < 0 ? errno : 0; }
  std::vector<iommu_iova_range> ranges(uint32_t ioas, int* err) const;
  bool md_mapped(uint32_t hwpt, uint64_t iova, uint64_t len, const uint8_t* ram) const;
  bool mapped(uint64_t iova, uint64_t len) const { return md_mapped(hwpt_, iova, len, ram_ + iova); }
  int ioas_covered(uint64_t iova, uint64_t len) const;
  void trigger(uint64_t addr);
  long vmpin() const;
  long vmpin_reaching(long want_kb) const;
  long vmpin_falling_to(long want_kb) const;
  Span fault(const Region& g, uint64_t addr);
  void set_model(uint64_t page, bool on);
  bool none_mapped(uint64_t iova, uint64_t len) const;
  std::string exact(const Span& w, bool* ok) const;
  void setup_mock();
  void spawn(const std::string& pinless, const std::string& kernel, const std::string& initrd, const std::string& dir);
  void device_moved();
  void check_pin_region();
  void pinned_at_start();
  void touch(const Region& g);
  void windows(const Region& g);
  void premap_change(Region& g);
  void burst(const Region& g);
  void outside_ram(const Region& g);
  void reclaim(const Region& g);
  void limit(const Region& g);
  // `pinless ctl --api-socket S ARGS`, stdout into out_path, stderr into out_path + ".err";
  // the wait status of the shell (0: ctl exited 0).
  int ctl(const std::string& args, const std::string& out_path) const;
  // The newest 'dma-ready:' line on pinless's stderr with a fault HWPT (hwpt != 0), waiting up
  // to timeout_ms; empty if none.
  std::string wait_fault_ready(int timeout_ms);
  bool pin_to_fault(Region& g);
  void fault_after_switch(const Region& g);
  void fault_to_pin(Region& g);
  void counters(const std::string& what, uint64_t map_calls, uint64_t unmap_calls);
  void ioas_state();
  void stop();
  void released();
  void back_home();
  void timeline();
  void teardown();

  std::string policy_;
  uint64_t ram_size_;
  std::vector<Region> regions_;
  std::vector<uint8_t> model_;  // 1 = this page must be mapped in pinless's IOAS by now
  int fd_ = -1;
  uint32_t home_ = 0, stdev_ = 0, idev_ = 0;
  std::vector<iommu_iova_range> home_attached_;
  PinlessProcess pinless_;
  std::string pinless_path_, api_socket_;
  std::string timeline_;
  uint32_t ioas_ = 0, hwpt_ = 0, fault_ = 0;
  uint8_t* ram_ = nullptr;
  uint64_t pin_limit_ = 0;
  // What this program did, for the timeline check: groups triggered, of them INVALID (and of
  // those over the pin limit), pages mapped by faults (cumulative), reclaimed windows/pages,
  // pages that must be mapped now and at most at once.
  uint64_t groups_ = 0, invalid_ = 0, over_limit_ = 0, fault_pages_ = 0, reclaims_ = 0, pages_reclaimed_ = 0;
  uint64_t model_pages_ = 0, peak_pages_ = 0;
};

}  // namespace pinless::testbed::fault_mock
