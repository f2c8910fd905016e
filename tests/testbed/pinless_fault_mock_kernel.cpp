// pinless_fault_mock: the kernel's view of one run. The mock device on the home IOAS,
// probes of pinless's IOAS (IOAS_COPY into home) and its mock page table (MD_CHECK_MAP),
// pinless's VmPin, raising faults (TRIGGER_IOPF), and what is left after pinless exits.
#include <sys/mman.h>

#include <cstring>

#include "pinless_fault_mock.h"

namespace pinless::testbed::fault_mock {

Span expected_window(const Region& g, uint64_t addr) {
  uint64_t base = g.first_page(), end = base + g.pages(), page = addr / kPage;
  if (g.window == "aligned") {
    uint64_t block = page - page % g.premap;
    return {std::max(block, base), std::min(block + g.premap, end)};
  }
  return {page, std::min(page + g.premap, end)};
}

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

// VmPin once it has reached want_kb (or after kFaultMs, when it never does). The kernel fills
// the IOMMU page table before it charges the pins (iommufd accounts a batch when its PFN
// reader is done), so a window can be visible in MD_CHECK_MAP a moment before VmPin counts it.
long Run::vmpin_reaching(long want_kb) const {
  long kb = vmpin();
  poll_until([&] { return (kb = vmpin()) >= want_kb; }, kFaultMs);
  return kb;
}

// VmPin once it has come down to want_kb (or after kFaultMs): for unmaps, which the kernel
// uncharges as it unpins; vmpin_reaching would accept any value above the target.
long Run::vmpin_falling_to(long want_kb) const {
  long kb = vmpin();
  poll_until([&] { return (kb = vmpin()) <= want_kb; }, kFaultMs);
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
    if (p >= ram_pages() || model_[p]) continue;
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

void Run::teardown() {
  pinless_.kill_now();
  if (ram_) munmap(ram_, ram_size_), ram_ = nullptr;
  if (fd_ >= 0) {
    if (stdev_) destroy_errno(fd_, stdev_);
    if (home_) destroy_errno(fd_, home_);
    ::close(fd_);
    fd_ = -1;
  }
}

}  // namespace pinless::testbed::fault_mock
