// pinless_fault_mock: end-to-end proof of pinless's fault-driven DMA on the real kernel.
//
//   pinless_fault_mock PINLESS KERNEL INITRD SCRATCH [forward|aligned|hint|reclaim|limit ...]
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
// (reclaim=off: a window over the cap is refused). One PASS/FAIL line per check; "N passed,
// N failed" at the end; exit 1 if any failed, 77 without /dev/iommu or IOMMUFD_TEST.
// Uses no pinless library (uapi headers only).
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <deque>
#include <nlohmann/json.hpp>

#include "pinless/iommu/uapi/iommufd_test.h"
#include "pinless_process.h"
#include "testbed_util.h"

using namespace pinless::testbed;
using nlohmann::json;

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kRamSize = 512 * kMiB;
constexpr uint64_t kRamPages = kRamSize / kPage;
constexpr uint64_t kPinStart = MOCK_APERTURE_START;  // the pin region 0:64M, mapped from 16M on
constexpr uint64_t kPinEnd = 64 * kMiB;
constexpr uint64_t kOutsideRam = 1ull << 30;             // in the mock aperture, not guest RAM
constexpr uint64_t kTouchOffset = 8 * kMiB;              // 2 MiB aligned inside each region
constexpr uint64_t kTouchBytes = 4 * kMiB;
constexpr uint64_t kProbeOffset = 32 * kMiB + 5 * kPage + 0x123;  // unaligned on purpose
constexpr unsigned kBurst = 5000;
constexpr uint64_t kBurstOffset = 4 * kMiB, kBurstStride = 3;  // pages 0, 3, 6, ...: never adjacent
// The pin-limit runs: 48 MiB static + room for 16 aligned 64 KiB windows.
constexpr uint64_t kPinLimit = 49 * kMiB, kLimitPremap = 16, kRoomWindows = 16;
constexpr int kReadyMs = 60000, kGuestMs = 180000, kFaultMs = 10000, kBurstMs = 120000, kExitMs = 60000;
constexpr uint32_t kRW = IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE;

unsigned long long ull(uint64_t v) { return static_cast<unsigned long long>(v); }

int g_passed = 0, g_failed = 0;

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

// Ends the current run: caught in main, reported as one FAIL line.
struct Abort {
  std::string what;
};
[[noreturn, gnu::format(printf, 1, 2)]] void abort_run(const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  throw Abort{msg};
}

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

// What a fault at `addr` in region g maps, as pinless's window policies define it (docs/dma.md,
// iommu/include/pinless/iommu/fault_window.h): forward = premap pages from the fault page,
// aligned = the naturally aligned premap block holding it, both clipped to the region; hint =
// the record's length, and the mock's records carry length 0, for which hint means forward.
Span expected_window(const Region& g, uint64_t addr) {
  uint64_t base = g.first_page(), end = base + g.pages(), page = addr / kPage;
  if (g.window == "aligned") {
    uint64_t block = page - page % g.premap;
    return {std::max(block, base), std::min(block + g.premap, end)};
  }
  return {page, std::min(page + g.premap, end)};
}

class Run {
 public:
  // kind: a window policy, or "reclaim" / "limit" for the pin-limit runs.
  explicit Run(std::string kind) : policy_(std::move(kind)), model_(kRamPages, 0) {
    if (policy_ == "reclaim" || policy_ == "limit") {
      regions_ = {{0, kPinEnd, false, 0, ""}, {64 * kMiB, 448 * kMiB, true, kLimitPremap, "aligned"}};
      pin_limit_ = kPinLimit;
    } else {
      regions_ = {{0, kPinEnd, false, 0, ""},
                  {64 * kMiB, 64 * kMiB, true, 1, policy_},
                  {128 * kMiB, 64 * kMiB, true, 16, policy_},
                  {192 * kMiB, 64 * kMiB, true, 512, policy_},
                  {256 * kMiB, 256 * kMiB, true, 1, policy_}};
    }
    for (uint64_t p = kPinStart / kPage; p < kPinEnd / kPage; ++p) set_model(p, true);
    peak_pages_ = model_pages_;
  }
  ~Run() { teardown(); }
  void execute(const std::string& pinless, const std::string& kernel, const std::string& initrd, const std::string& dir);

 private:
  std::string name(const std::string& what) const { return policy_ + "/" + what; }
  iommu_test_cmd test_cmd(uint32_t op, uint32_t id) const;
  int test_ioctl(iommu_test_cmd& c) const { return ioctl(fd_, IOMMU_TEST_CMD, &c) < 0 ? errno : 0; }
  std::vector<iommu_iova_range> ranges(uint32_t ioas, int* err) const;
  bool md_mapped(uint32_t hwpt, uint64_t iova, uint64_t len, const uint8_t* ram) const;
  bool mapped(uint64_t iova, uint64_t len) const { return md_mapped(hwpt_, iova, len, ram_ + iova); }
  int ioas_covered(uint64_t iova, uint64_t len) const;
  void trigger(uint64_t addr);
  long vmpin() const;
  Span fault(const Region& g, uint64_t addr);
  void set_model(uint64_t page, bool on);
  bool none_mapped(uint64_t iova, uint64_t len) const;
  std::string exact(const Span& w, bool* ok) const;
  void setup_mock();
  void spawn(const std::string& pinless, const std::string& kernel, const std::string& initrd, const std::string& dir);
  void check_pin_region();
  void touch(const Region& g);
  void windows(const Region& g);
  void burst(const Region& g);
  void outside_ram(const Region& g);
  void reclaim(const Region& g);
  void limit(const Region& g);
  void ioas_state();
  void stop();
  void released();
  void back_home();
  void timeline();
  void teardown();

  std::string policy_;
  std::vector<Region> regions_;
  std::vector<uint8_t> model_;  // 1 = this page must be mapped in pinless's IOAS by now
  int fd_ = -1;
  uint32_t home_ = 0, stdev_ = 0, idev_ = 0;
  std::vector<iommu_iova_range> home_attached_;
  PinlessProcess pinless_;
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

iommu_test_cmd Run::test_cmd(uint32_t op, uint32_t id) const {
  iommu_test_cmd c{};
  c.size = sizeof c;
  c.op = op;
  c.id = id;
  return c;
}

std::vector<iommu_iova_range> Run::ranges(uint32_t ioas, int* err) const {
  std::vector<iommu_iova_range> r(16);
  iommu_ioas_iova_ranges q{};
  q.size = sizeof q;
  q.ioas_id = ioas;
  q.num_iovas = uint32_t(r.size());
  q.allowed_iovas = reinterpret_cast<uint64_t>(r.data());
  *err = ioctl(fd_, IOMMU_IOAS_IOVA_RANGES, &q) < 0 ? errno : 0;
  r.resize(*err ? 0 : q.num_iovas);
  return r;
}

std::string text(const std::vector<iommu_iova_range>& r) {
  std::string s;
  char buf[64];
  for (const auto& x : r) {
    std::snprintf(buf, sizeof buf, "%s0x%llx-0x%llx", s.empty() ? "" : ",", ull(x.start), ull(x.last));
    s += buf;
  }
  return s.empty() ? "none" : s;
}

bool same(const std::vector<iommu_iova_range>& a, const std::vector<iommu_iova_range>& b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](auto& x, auto& y) { return x.start == y.start && x.last == y.last; });
}

// Does the mock page table of `hwpt` translate [iova, +len) to the pages at `ram`?
// (EINVAL: some mock page is unmapped or points elsewhere.)
bool Run::md_mapped(uint32_t hwpt, uint64_t iova, uint64_t len, const uint8_t* ram) const {
  iommu_test_cmd c = test_cmd(IOMMU_TEST_OP_MD_CHECK_MAP, hwpt);
  c.check_map.iova = iova;
  c.check_map.length = len;
  c.check_map.uptr = reinterpret_cast<uint64_t>(ram);
  int e = test_ioctl(c);
  if (e && e != EINVAL) abort_run("MD_CHECK_MAP(hwpt %u, 0x%llx+0x%llx): %s", hwpt, ull(iova), ull(len), std::strerror(e));
  return e == 0;
}

// 0 if pinless's IOAS maps all of [iova, +len), else the errno (ENOENT: something unmapped).
// Copies the range into home (no device there while pinless runs: nothing pinned) and
// unmaps the copy again; pinless's IOAS is only read.
int Run::ioas_covered(uint64_t iova, uint64_t len) const {
  iommu_ioas_copy c{};
  c.size = sizeof c;
  c.flags = IOMMU_IOAS_MAP_READABLE;
  c.dst_ioas_id = home_;
  c.src_ioas_id = ioas_;
  c.length = len;
  c.src_iova = iova;
  if (ioctl(fd_, IOMMU_IOAS_COPY, &c) < 0) return errno;
  iommu_ioas_unmap u{};
  u.size = sizeof u;
  u.ioas_id = home_;
  u.iova = c.dst_iova;
  u.length = len;
  if (ioctl(fd_, IOMMU_IOAS_UNMAP, &u) < 0) abort_run("IOAS_UNMAP of the probe copy in home: %s", err());
  return 0;
}

void Run::trigger(uint64_t addr) {
  iommu_test_cmd c = test_cmd(IOMMU_TEST_OP_TRIGGER_IOPF, 0);
  c.trigger_iopf.dev_id = idev_;
  c.trigger_iopf.pasid = 0;
  c.trigger_iopf.grpid = uint32_t(groups_ & 0x1ff);
  c.trigger_iopf.perm = kRW;
  c.trigger_iopf.addr = addr;
  if (int e = test_ioctl(c)) abort_run("TRIGGER_IOPF(idev %u, 0x%llx): %s", idev_, ull(addr), std::strerror(e));
  groups_++;
}

long Run::vmpin() const {
  long kb = pinless_.status_kb("VmPin");
  if (kb < 0) abort_run("no VmPin in /proc/%d/status (pinless gone?)", pinless_.pid());
  return kb;
}

// One fault, resolved: TRIGGER_IOPF, then wait until the mock page table maps the whole
// window the policy defines (a window pinless maps differently times out here, or shows up
// in the neighbour, count and VmPin checks).
Span Run::fault(const Region& g, uint64_t addr) {
  trigger(addr);
  Span w = expected_window(g, addr);
  uint64_t iova = w.first * kPage, len = w.count() * kPage;
  if (!poll_until([&] { return mapped(iova, len); }, kFaultMs)) {
    bool page = mapped(addr & ~(kPage - 1), kPage);
    abort_run("fault at 0x%llx (region 0x%llx premap %llu %s): window 0x%llx..0x%llx not mapped within %d ms "
              "(the fault page itself %s)",
              ull(addr), ull(g.gpa), ull(g.premap), g.window.c_str(), ull(iova), ull(iova + len - 1), kFaultMs,
              page ? "is mapped" : "is not mapped either");
  }
  for (uint64_t p = w.first; p < w.end; ++p) {
    if (!model_[p]) set_model(p, true), fault_pages_++;
  }
  peak_pages_ = std::max(peak_pages_, model_pages_);
  return w;
}

void Run::set_model(uint64_t page, bool on) {
  if (bool(model_[page]) != on) model_pages_ += on ? 1 : -1;
  model_[page] = on;
}

// Every page of [iova, +len) is unmapped in pinless's IOAS.
bool Run::none_mapped(uint64_t iova, uint64_t len) const {
  for (uint64_t a = iova; a < iova + len; a += kPage)
    if (ioas_covered(a, kPage) != ENOENT) return false;
  return true;
}

// The window is mapped (fault() waited for it); the pages on either side that nothing has
// mapped yet must be unmapped in pinless's IOAS.
std::string Run::exact(const Span& w, bool* ok) const {
  char buf[256];
  std::string side;
  *ok = true;
  for (uint64_t p : {w.first - 1, w.end}) {
    if (p >= kRamPages || model_[p]) continue;
    int e = ioas_covered(p * kPage, kPage);
    if (e != ENOENT) *ok = false;
    side += side.empty() ? "" : ", ";
    std::snprintf(buf, sizeof buf, "0x%llx %s", ull(p * kPage), e == ENOENT ? "unmapped" : e ? std::strerror(e) : "MAPPED");
    side += buf;
  }
  std::snprintf(buf, sizeof buf, "0x%llx..0x%llx (%llu pages; neighbours: %s)", ull(w.first * kPage),
                ull(w.end * kPage - 1), ull(w.count()), side.empty() ? "none unmapped to check" : side.c_str());
  return buf;
}

void Run::setup_mock() {
  fd_ = ::open("/dev/iommu", O_RDWR);  // no O_CLOEXEC: pinless inherits it
  if (fd_ < 0) abort_run("open /dev/iommu: %s", err());
  iommu_ioas_alloc a{};
  a.size = sizeof a;
  if (ioctl(fd_, IOMMU_IOAS_ALLOC, &a) < 0) abort_run("IOMMU_IOAS_ALLOC: %s", err());
  home_ = a.out_ioas_id;
  iommu_test_cmd md = test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, home_);
  if (int e = test_ioctl(md)) abort_run("IOMMU_TEST_OP_MOCK_DOMAIN(ioas %u): %s", home_, std::strerror(e));
  stdev_ = md.mock_domain.out_stdev_id;
  idev_ = md.mock_domain.out_idev_id;
  int e = 0;
  home_attached_ = ranges(home_, &e);
  if (e) abort_run("IOAS_IOVA_RANGES(home %u): %s", home_, std::strerror(e));
  std::printf("# %s: iommufd %d, home ioas %u, mock stdev %u idev %u hwpt %u; home ranges with the device: %s\n",
              policy_.c_str(), fd_, home_, stdev_, idev_, md.mock_domain.out_hwpt_id, text(home_attached_).c_str());
}

void Run::spawn(const std::string& pinless, const std::string& kernel, const std::string& initrd, const std::string& dir) {
  timeline_ = dir + "/" + policy_ + ".json";
  std::remove(timeline_.c_str());
  std::string cmdline = "console=ttyS0 reboot=k panic=-1 quiet";
  if (const char* tb = std::getenv("PINLESS_TESTBED"); tb && std::string(tb) == "1") cmdline += " noxsave";
  cmdline += " pinless.test=idle";
  std::vector<std::string> args = {pinless, "run", "--kernel", kernel, "--initrd", initrd, "--cmdline", cmdline,
                                   "--memory", "size=512M", "--iommufd-fd", std::to_string(fd_), "--device",
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
  args.insert(args.end(), {"--timeline=" + timeline_, "--log-level", "info"});
  std::string shown;
  for (const auto& a : args) shown += (shown.empty() ? "" : " ") + (a.find(' ') != std::string::npos ? "'" + a + "'" : a);
  std::printf("# %s: %s\n", policy_.c_str(), shown.c_str());
  std::fflush(stdout);

  if (std::string e = pinless_.start(args, dir + "/" + policy_ + ".out", dir + "/" + policy_ + ".err"); !e.empty())
    abort_run("%s", e.c_str());
}

void Run::check_pin_region() {
  int e = 0;
  auto away = ranges(home_, &e);
  check(!e && !same(away, home_attached_), name("device-moved"),
        "home ioas %u ranges while pinless runs: %s (with the device attached: %s)", home_,
        e ? std::strerror(e) : text(away).c_str(), text(home_attached_).c_str());
  bool pinned = mapped(kPinStart, kPinEnd - kPinStart);
  int below = ioas_covered(0, kPage);
  long kb = vmpin();
  long want = long((kPinEnd - kPinStart) / 1024);
  check(pinned && below == ENOENT && kb == want, name("pin-region"),
        "0x%llx..0x%llx in the mock page table of hwpt %u: %s; GPA 0 (below the mock aperture) %s; pinless VmPin %ld kB "
        "before any fault (want %ld)",
        ull(kPinStart), ull(kPinEnd - 1), hwpt_, pinned ? "mapped" : "NOT MAPPED",
        below == ENOENT ? "unmapped" : below ? std::strerror(below) : "MAPPED", kb, want);
}

// Sequential 4 MiB touch in 4 KiB steps from a 2 MiB aligned start; a page faults only if the
// mock page table does not translate it.
void Run::touch(const Region& g) {
  long kb0 = vmpin();
  uint64_t start = g.gpa + kTouchOffset, faults = 0, t0 = now_us();
  bool first_ok = false;
  std::string first;
  for (uint64_t off = 0; off < kTouchBytes; off += kPage) {
    if (mapped(start + off, kPage)) continue;
    Span w = fault(g, start + off);
    if (++faults == 1) first = exact(w, &first_ok);
  }
  uint64_t ms = (now_us() - t0) / 1000;
  long kb = vmpin() - kb0;
  uint64_t want = kTouchBytes / kPage / g.premap;
  bool all = mapped(start, kTouchBytes);
  check(faults == want && first_ok && all && uint64_t(kb) == kTouchBytes / 1024, name("touch-premap-" + std::to_string(g.premap)),
        "4 MiB at 0x%llx: %llu faults (want %llu), %llu ms; first fault mapped exactly %s; all 4 MiB mapped: %s; VmPin "
        "+%ld kB (want +%llu)",
        ull(start), ull(faults), ull(want), ull(ms), first.c_str(), all ? "yes" : "NO", kb, ull(kTouchBytes / 1024));
}

// Exact windows: a fault at an unaligned address mid-region, and one two pages before the
// region end (the window must stop at the region boundary; the next region's first page
// stays unmapped).
void Run::windows(const Region& g) {
  long kb0 = vmpin();
  bool ok1 = false, ok2 = false;
  uint64_t a1 = g.gpa + kProbeOffset, a2 = g.gpa + g.size - 2 * kPage;
  Span w1 = fault(g, a1);
  std::string s1 = exact(w1, &ok1);
  Span w2 = fault(g, a2);
  std::string s2 = exact(w2, &ok2);
  long kb = vmpin() - kb0;
  uint64_t want = (w1.count() + w2.count()) * kPage / 1024;
  check(ok1 && ok2 && w2.end * kPage <= g.gpa + g.size && uint64_t(kb) == want, name("window-premap-" + std::to_string(g.premap)),
        "fault at 0x%llx mapped exactly %s; fault at 0x%llx mapped exactly %s; VmPin +%ld kB (want +%llu)", ull(a1),
        s1.c_str(), ull(a2), s2.c_str(), kb, ull(want));
}

// Thousands of faults at distinct, non-adjacent pages, triggered back to back from this one
// thread; then every page must get mapped within a bounded time.
void Run::burst(const Region& g) {
  long kb0 = vmpin();
  uint64_t base = g.gpa + kBurstOffset, t0 = now_us();
  for (unsigned i = 0; i < kBurst; ++i) trigger(base + i * kBurstStride * kPage);
  uint64_t t1 = now_us();
  unsigned done = 0;
  bool drained = poll_until(
      [&] {
        while (done < kBurst && mapped(base + done * kBurstStride * kPage, kPage)) done++;
        return done == kBurst;
      },
      kBurstMs);
  uint64_t t2 = now_us();
  for (unsigned i = 0; i < done; ++i) {
    uint64_t p = (base / kPage) + i * kBurstStride;
    if (!model_[p]) set_model(p, true), fault_pages_++;
  }
  peak_pages_ = std::max(peak_pages_, model_pages_);
  unsigned gaps_mapped = 0;
  for (unsigned i = 0; i + 1 < kBurst; ++i)
    for (uint64_t k = 1; k < kBurstStride; ++k)
      if (ioas_covered(base + (i * kBurstStride + k) * kPage, kPage) != ENOENT) gaps_mapped++;
  long kb = vmpin() - kb0;
  check(drained && gaps_mapped == 0 && uint64_t(kb) == kBurst * kPage / 1024, name("burst"),
        "%u TRIGGER_IOPF over 0x%llx..0x%llx (every %llu pages) in %llu ms; %u of %u pages mapped after %llu ms (limit %d "
        "ms); %u of the %u pages between them mapped (want 0); VmPin +%ld kB (want +%llu)",
        kBurst, ull(base), ull(base + uint64_t(kBurst) * kBurstStride * kPage - 1), ull(kBurstStride),
        ull((t1 - t0) / 1000), done, kBurst, ull((t2 - t1) / 1000), kBurstMs, gaps_mapped,
        (kBurst - 1) * unsigned(kBurstStride - 1), kb, ull(kBurst * kPage / 1024));
  if (!drained) abort_run("burst not drained");
}

// A fault at an IOVA in the mock aperture but outside guest RAM maps nothing. A fault after it
// (same queue, answered in order) tells when pinless has dealt with it.
void Run::outside_ram(const Region& g) {
  long kb0 = vmpin();
  trigger(kOutsideRam);
  invalid_++;
  uint64_t sentinel = g.gpa + g.size - 64 * kPage;
  fault(g, sentinel);
  int e = ioas_covered(kOutsideRam, kPage), control = ioas_covered(sentinel, kPage);
  long kb = vmpin() - kb0;
  check(e == ENOENT && control == 0 && kb == 4, name("outside-ram"),
        "fault at 0x%llx (512M RAM): pinless's IOAS there %s (IOAS_COPY probe; the same probe on the fault at 0x%llx "
        "after it: %s); VmPin +%ld kB (want +4, the second fault only)",
        ull(kOutsideRam), e == ENOENT ? "unmapped (ENOENT)" : e ? std::strerror(e) : "MAPPED", ull(sentinel),
        control ? std::strerror(control) : "mapped", kb);
}

// --pin-limit 49M,reclaim=on: 48 MiB of static pins leave room for 16 aligned 64 KiB windows.
// 64 windows faulted one after the other: from the 17th on each evicts the least recently
// faulted one, VmPin never exceeds the cap, and only the newest 16 stay mapped. A device
// touching an evicted page faults again and gets it back, evicting the then oldest window.
void Run::reclaim(const Region& g) {
  const uint64_t win = g.premap * kPage, start = g.gpa + kTouchOffset;
  const long cap_kb = long(kPinLimit / 1024);
  std::deque<Span> lru;
  long peak = 0;
  auto fault_lru = [&](uint64_t addr) {
    if (lru.size() == kRoomWindows) {  // what pinless must evict to make room
      for (uint64_t p = lru.front().first; p < lru.front().end; ++p) set_model(p, false);
      reclaims_++;
      pages_reclaimed_ += lru.front().count();
      lru.pop_front();
    }
    lru.push_back(fault(g, addr));
    peak = std::max(peak, vmpin());
  };
  uint64_t t0 = now_us();
  for (uint64_t i = 0; i < 64; ++i) fault_lru(start + i * win);
  uint64_t ms = (now_us() - t0) / 1000;
  bool newest = ioas_covered(start + 48 * win, 16 * win) == 0, older = none_mapped(start, 48 * win);
  long kb = vmpin();
  check(newest && older && peak <= cap_kb && kb == cap_kb, name("reclaim"),
        "64 windows of %llu kB faulted at 0x%llx.. in %llu ms with room for %llu: newest 16 mapped: %s, the 48 before "
        "them unmapped: %s; VmPin peak %ld kB, now %ld kB (cap %ld kB)",
        ull(win / 1024), ull(start), ull(ms), ull(kRoomWindows), newest ? "yes" : "NO", older ? "yes" : "NO", peak, kb,
        cap_kb);
  fault_lru(start + 5 * kPage);  // in the first window, evicted long ago
  bool back = ioas_covered(start, win) == 0, evicted = none_mapped(start + 48 * win, win);
  kb = vmpin();
  check(back && evicted && kb == cap_kb, name("reclaim-refault"),
        "a fault in the evicted window 0x%llx mapped it again: %s; the then oldest window 0x%llx evicted: %s; VmPin %ld "
        "kB (cap %ld kB)",
        ull(start), back ? "yes" : "NO", ull(start + 48 * win), evicted ? "yes" : "NO", kb, cap_kb);
}

// --pin-limit 49M,reclaim=off: 16 windows fit; the 17th fault is refused and maps nothing.
// pinless warns with the fault's IOVA when it refuses it; that line says it has been handled.
void Run::limit(const Region& g) {
  const uint64_t win = g.premap * kPage, start = g.gpa + kTouchOffset;
  const long cap_kb = long(kPinLimit / 1024);
  for (uint64_t i = 0; i < kRoomWindows; ++i) fault(g, start + i * win);
  long full = vmpin();
  uint64_t over = start + kRoomWindows * win;
  trigger(over);
  invalid_++;
  over_limit_++;
  char hex[32];
  std::snprintf(hex, sizeof hex, "0x%llx", ull(over));
  std::string warned = pinless_.wait_line(pinless_.err_path(), hex, 5000);
  if (!pinless_.running()) abort_run("pinless exited (%s)", pinless_.status_text().c_str());
  bool unmapped = none_mapped(over, win);
  long kb = vmpin();
  check(full == cap_kb && unmapped && kb == cap_kb, name("limit"),
        "16 windows of %llu kB filled the cap: VmPin %ld kB (cap %ld kB); the next fault at 0x%llx mapped nothing: %s, "
        "VmPin %ld kB; pinless said: %s",
        ull(win / 1024), full, cap_kb, ull(over), unmapped ? "yes" : "NO", kb,
        warned.empty() ? "(no line with the IOVA within 5 s)" : warned.c_str());
}

// pinless's IOAS holds exactly what this program expects, page by page over all guest RAM
// (runs of expected pages copied whole, every other page probed alone), and VmPin says the same.
void Run::ioas_state() {
  uint64_t t0 = now_us(), wrong = 0, first_wrong = ~0ull, mapped_pages = 0;
  for (uint64_t p = 0; p < kRamPages;) {
    uint64_t q = p;
    while (q < kRamPages && model_[q] == model_[p]) q++;
    if (model_[p]) {
      mapped_pages += q - p;
      if (ioas_covered(p * kPage, (q - p) * kPage) != 0) wrong++, first_wrong = std::min(first_wrong, p);
    } else {
      for (uint64_t r = p; r < q; ++r)
        if (ioas_covered(r * kPage, kPage) != ENOENT) wrong++, first_wrong = std::min(first_wrong, r);
    }
    p = q;
  }
  if (ioas_covered(kOutsideRam, kPage) != ENOENT) wrong++;
  long kb = vmpin();
  long want = long(mapped_pages * kPage / 1024);
  char where[64] = "";
  if (wrong) std::snprintf(where, sizeof where, " (first at 0x%llx)", ull(first_wrong * kPage));
  check(wrong == 0 && kb == want, name("ioas-state"),
        "pinless's IOAS maps exactly the %llu expected pages of 512M RAM (pin region 48 MiB + %llu by faults), %llu "
        "mismatches%s, %llu ms; VmPin %ld kB (want %ld)",
        ull(mapped_pages), ull(mapped_pages - (kPinEnd - kPinStart) / kPage), ull(wrong), where, ull((now_us() - t0) / 1000), kb, want);
}

void Run::stop() {
  uint64_t ms = 0;
  bool gone = pinless_.terminate(kExitMs, &ms);
  int st = pinless_.status();
  check(gone && WIFEXITED(st) && WEXITSTATUS(st) == 143, name("sigterm"),
        "pinless %s %llu ms after SIGTERM (want exit status 143 within %d ms)",
        gone ? pinless_.status_text().c_str() : "still running (SIGKILLed)", ull(ms), kExitMs);
}

int destroy_errno(int fd, uint32_t id) {
  iommu_destroy d{};
  d.size = sizeof d;
  d.id = id;
  return ioctl(fd, IOMMU_DESTROY, &d) < 0 ? errno : 0;
}

// Checked before this program allocates any object, so no ID can have been reused.
void Run::released() {
  int e_ioas = 0;
  ranges(ioas_, &e_ioas);
  int e_hwpt = destroy_errno(fd_, hwpt_), e_fault = destroy_errno(fd_, fault_);
  auto t = [](int e) { return e == ENOENT ? std::string("ENOENT") : e ? std::strerror(e) : std::string("STILL THERE"); };
  check(e_ioas == ENOENT && e_hwpt == ENOENT && e_fault == ENOENT, name("objects-released"),
        "on the shared iommufd after exit: IOAS_IOVA_RANGES(ioas %u) %s, DESTROY(hwpt %u) %s, DESTROY(fault %u) %s",
        ioas_, t(e_ioas).c_str(), hwpt_, t(e_hwpt).c_str(), fault_, t(e_fault).c_str());
}

// The mock device is attached to a domain of home again: home's ranges are the aperture
// again, mapping a page into home pins it (only a domain pins), and home's domain translates it.
void Run::back_home() {
  int e = 0;
  auto now = ranges(home_, &e);
  void* page = mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (page == MAP_FAILED) abort_run("mmap: %s", err());
  long kb0 = proc_status_kb("VmPin");
  iommu_ioas_map m{};
  m.size = sizeof m;
  m.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
  m.ioas_id = home_;
  m.user_va = reinterpret_cast<uint64_t>(page);
  m.length = kPage;
  m.iova = kPinStart;
  int em = ioctl(fd_, IOMMU_IOAS_MAP, &m) < 0 ? errno : 0;
  long kb = proc_status_kb("VmPin") - kb0;
  // Replacing onto the IOAS the device is already on is a no-op that reports its HWPT.
  iommu_test_cmd rep = test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev_);
  rep.mock_domain_replace.pt_id = home_;
  int er = test_ioctl(rep);
  uint32_t hwpt = rep.mock_domain_replace.pt_id;
  bool md = !em && !er && md_mapped(hwpt, kPinStart, kPage, static_cast<uint8_t*>(page));
  check(!e && same(now, home_attached_) && !em && kb == 4 && md, name("device-home"),
        "home ioas %u ranges %s (as before pinless: %s); IOAS_MAP of one page into home %s, pinned +%ld kB (want +4: a "
        "domain is attached); home's hwpt %u translates it: %s",
        home_, e ? std::strerror(e) : text(now).c_str(), text(home_attached_).c_str(), em ? std::strerror(em) : "ok", kb,
        hwpt, md ? "yes" : "NO");
  iommu_ioas_unmap u{};
  u.size = sizeof u;
  u.ioas_id = home_;
  u.length = ~0ull;
  ioctl(fd_, IOMMU_IOAS_UNMAP, &u);
  munmap(page, kPage);
}

uint64_t num(const json& j) { return j.get<uint64_t>(); }

// Pages of region g this program expects mapped now.
uint64_t pages_in(const std::vector<uint8_t>& model, const Region& g) {
  return uint64_t(std::count(model.begin() + long(g.first_page()), model.begin() + long(g.first_page() + g.pages()), 1));
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
    bool rok = rs.size() == regions_.size();
    for (size_t i = 0; i < rs.size() && i < regions_.size(); ++i) {
      const json& r = rs[i];
      const Region& g = regions_[i];
      uint64_t want = pages_in(model_, g) * kPage;
      bool one = std::strtoull(r.at("gpa").get<std::string>().c_str(), nullptr, 0) == g.gpa && num(r.at("size")) == g.size &&
                 r.at("dma") == (g.fault ? "fault" : "pin") && num(r.at("pinned_bytes")) == want &&
                 (!g.fault || (num(r.at("premap")) == g.premap && r.at("window") == g.window));
      std::string what = r.at("dma").get<std::string>();
      if (g.fault) what += " premap " + std::to_string(num(r.at("premap"))) + " " + r.at("window").get<std::string>();
      char buf[256];
      std::snprintf(buf, sizeof buf, "%s%s+%lluM %s pinned %llu%s", got.empty() ? "" : "; ",
                    r.at("gpa").get<std::string>().c_str(), ull(num(r.at("size")) / kMiB), what.c_str(),
                    ull(num(r.at("pinned_bytes"))), one ? "" : (" (want " + std::to_string(want) + ")").c_str());
      got += buf;
      rok = rok && one;
    }
    check(rok, name("timeline-regions"), "%zu regions: %s", rs.size(), got.c_str());
  } catch (const json::exception& e) {
    check(false, name("timeline"), "%s: %s (dma: %s)", timeline_.c_str(), e.what(),
          t.contains("dma") ? t["dma"].dump().substr(0, 400).c_str() : "missing");
  }
}

void Run::teardown() {
  pinless_.kill_now();
  if (ram_) munmap(ram_, kRamSize), ram_ = nullptr;
  if (fd_ >= 0) {
    if (stdev_) destroy_errno(fd_, stdev_);
    if (home_) destroy_errno(fd_, home_);
    ::close(fd_);
    fd_ = -1;
  }
}

void Run::execute(const std::string& pinless, const std::string& kernel, const std::string& initrd, const std::string& dir) {
  setup_mock();
  spawn(pinless, kernel, initrd, dir);
  uint64_t t0 = now_us();
  std::string line = pinless_.wait_line(pinless_.err_path(), "dma-ready:", kReadyMs);
  if (line.empty())
    abort_run("no 'dma-ready:' on pinless's stderr within %d ms (%s); stderr tail:\n%s", kReadyMs,
              pinless_.status_text().c_str(), file_tail(pinless_.err_path(), 15).c_str());
  const char* at = std::strstr(std::strstr(line.c_str(), "dma-ready:"), "ioas=");
  if (!at || std::sscanf(at, "ioas=%u hwpt=%u fault=%u", &ioas_, &hwpt_, &fault_) != 3)
    abort_run("cannot parse 'ioas=N hwpt=N fault=N' from: %s", line.c_str());
  check(true, name("dma-ready"), "after %llu ms: ioas %u, hwpt %u, fault %u", ull((now_us() - t0) / 1000), ioas_, hwpt_,
        fault_);
  std::string error;
  ram_ = pinless_.map_memfd("pinless-guest-ram", kRamSize, &error);
  if (!ram_) abort_run("pinless's guest RAM: %s", error.c_str());
  line = pinless_.wait_line(pinless_.out_path(), "idle: up", kGuestMs);
  if (line.empty())
    abort_run("the guest did not print 'idle: up' within %d ms (%s); console tail:\n%s\nstderr tail:\n%s", kGuestMs,
              pinless_.status_text().c_str(), file_tail(pinless_.out_path(), 8).c_str(),
              file_tail(pinless_.err_path(), 8).c_str());
  std::printf("# %s: guest up after %llu ms\n", policy_.c_str(), ull((now_us() - t0) / 1000));
  check_pin_region();
  if (policy_ == "reclaim") {
    reclaim(regions_[1]);
  } else if (policy_ == "limit") {
    limit(regions_[1]);
  } else {
    for (size_t i = 1; i <= 3; ++i) {
      touch(regions_[i]);
      windows(regions_[i]);
    }
    burst(regions_[4]);
    outside_ram(regions_[4]);
  }
  ioas_state();
  stop();
  released();
  back_home();
  timeline();
}

}  // namespace

int main(int argc, char** argv) {
  g_prog = "pinless_fault_mock";
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s PINLESS KERNEL INITRD SCRATCH_DIR [forward|aligned|hint|reclaim|limit ...]\n", argv[0]);
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
  if (policies.empty()) policies = {"forward", "aligned", "hint", "reclaim", "limit"};
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
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
