// iommufd_mock_iopf: an I/O page fault round trip through the real iommufd fault
// path, driven by the IOMMUFD_TEST mock device (no emulated device raises PCI
// page requests; see TESTBED.md):
//   IOAS_ALLOC -> MOCK_DOMAIN -> FAULT_QUEUE_ALLOC -> HWPT_ALLOC(FAULT_ID_VALID)
//   -> MOCK_DOMAIN_REPLACE -> TRIGGER_IOPF -> poll -> read 40-byte record
//   -> IOAS_MAP(FIXED_IOVA) -> MD_CHECK_MAP -> write SUCCESS response
// checking every record field; then a fault answered INVALID must complete too
// (its cookie is consumed), and a repeated cookie must be refused.
// Exit 77 without /dev/iommu or without CONFIG_IOMMUFD_TEST.
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "pinless/iommu/uapi/iommufd_test.h"
#include "testbed_util.h"

using namespace pinless::testbed;

namespace {

constexpr uint64_t kFaultIova = 0x2000000;  // 32 MiB: inside the mock aperture 16 MiB .. 2 GiB-1
constexpr uint32_t kGrpid = 0x2a;
constexpr unsigned kTimedRounds = 50;

int g_fd = -1;

iommu_test_cmd test_cmd(uint32_t op, uint32_t id) {
  iommu_test_cmd c{};
  c.size = sizeof c;
  c.op = op;
  c.id = id;
  return c;
}

void destroy(uint32_t id, const char* what) {
  iommu_destroy d{};
  d.size = sizeof d;
  d.id = id;
  if (ioctl(g_fd, IOMMU_DESTROY, &d) < 0) fail("IOMMU_DESTROY(%s %u): %s", what, id, err());
}

void trigger(uint32_t idev, uint64_t addr, uint32_t perm) {
  iommu_test_cmd c = test_cmd(IOMMU_TEST_OP_TRIGGER_IOPF, 0);
  c.trigger_iopf.dev_id = idev;
  c.trigger_iopf.pasid = 0;
  c.trigger_iopf.grpid = kGrpid;
  c.trigger_iopf.perm = perm;
  c.trigger_iopf.addr = addr;
  if (ioctl(g_fd, IOMMU_TEST_CMD, &c) < 0) fail("IOMMU_TEST_OP_TRIGGER_IOPF(addr 0x%llx): %s", static_cast<unsigned long long>(addr), err());
}

// Waits for one fault group and reads it; checks the record against what was triggered.
iommu_hwpt_pgfault read_fault(int fault_fd, uint32_t idev, uint64_t addr, uint32_t perm) {
  pollfd p{fault_fd, POLLIN, 0};
  int r = poll(&p, 1, 2000);
  if (r < 0) fail("poll fault fd: %s", err());
  if (r == 0 || !(p.revents & POLLIN)) fail("fault fd not readable 2 s after TRIGGER_IOPF (revents 0x%x)", p.revents);
  iommu_hwpt_pgfault rec[4]{};
  ssize_t n = read(fault_fd, rec, sizeof rec);
  if (n < 0) fail("read fault fd: %s", err());
  if (n != sizeof(iommu_hwpt_pgfault))
    fail("read %zd bytes from the fault fd, want one 40-byte record", n);
  const iommu_hwpt_pgfault& f = rec[0];
  if (f.flags != IOMMU_PGFAULT_FLAGS_LAST_PAGE)
    fail("record flags 0x%x, want LAST_PAGE (0x%x) only (pasid 0: no PASID_VALID)", f.flags,
         IOMMU_PGFAULT_FLAGS_LAST_PAGE);
  if (f.dev_id != idev) fail("record dev_id %u, want %u", f.dev_id, idev);
  if (f.pasid != 0) fail("record pasid %u, want 0", f.pasid);
  if (f.grpid != kGrpid) fail("record grpid 0x%x, want 0x%x", f.grpid, kGrpid);
  if (f.perm != perm) fail("record perm 0x%x, want 0x%x", f.perm, perm);
  if (f.addr != addr) fail("record addr 0x%llx, want 0x%llx", static_cast<unsigned long long>(f.addr), static_cast<unsigned long long>(addr));
  if (f.length != 0) fail("record length %u, want 0", f.length);
  if (f.cookie == 0) fail("record cookie 0 (cookies start at 1)");
  return f;
}

void respond(int fault_fd, uint32_t cookie, uint32_t code) {
  iommu_hwpt_page_response resp{cookie, code};
  ssize_t n = write(fault_fd, &resp, sizeof resp);
  if (n != sizeof resp) fail("write response (cookie %u, code %u): %zd, %s", cookie, code, n, n < 0 ? err() : "short");
}

void map_fixed(uint32_t ioas, void* va, uint64_t iova, uint64_t len) {
  iommu_ioas_map m{};
  m.size = sizeof m;
  m.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
  m.ioas_id = ioas;
  m.user_va = reinterpret_cast<uint64_t>(va);
  m.length = len;
  m.iova = iova;
  if (ioctl(g_fd, IOMMU_IOAS_MAP, &m) < 0) fail("IOMMU_IOAS_MAP(FIXED_IOVA 0x%llx): %s", static_cast<unsigned long long>(iova), err());
}

void unmap(uint32_t ioas, uint64_t iova, uint64_t len) {
  iommu_ioas_unmap u{};
  u.size = sizeof u;
  u.ioas_id = ioas;
  u.iova = iova;
  u.length = len;
  if (ioctl(g_fd, IOMMU_IOAS_UNMAP, &u) < 0) fail("IOMMU_IOAS_UNMAP(0x%llx): %s", static_cast<unsigned long long>(iova), err());
  if (u.length != len) fail("IOAS_UNMAP unmapped 0x%llx, want 0x%llx", static_cast<unsigned long long>(u.length), static_cast<unsigned long long>(len));
}

void check_map(uint32_t hwpt, uint64_t iova, void* va, uint64_t len) {
  iommu_test_cmd c = test_cmd(IOMMU_TEST_OP_MD_CHECK_MAP, hwpt);
  c.check_map.iova = iova;
  c.check_map.length = len;
  c.check_map.uptr = reinterpret_cast<uint64_t>(va);
  if (ioctl(g_fd, IOMMU_TEST_CMD, &c) < 0)
    fail("MD_CHECK_MAP(hwpt %u, iova 0x%llx): %s (mock page table does not map the page)", hwpt,
         static_cast<unsigned long long>(iova), err());
}

}  // namespace

int main() {
  g_prog = "iommufd_mock_iopf";
  if (!exists("/dev/iommu")) skip("no /dev/iommu: kernel without CONFIG_IOMMUFD");
  Fd iommufd(::open("/dev/iommu", O_RDWR | O_CLOEXEC));
  if (!iommufd.valid()) fail("open /dev/iommu: %s", err());
  g_fd = iommufd.get();
  uint64_t t0 = now_us();

  iommu_ioas_alloc ioas{};
  ioas.size = sizeof ioas;
  if (ioctl(g_fd, IOMMU_IOAS_ALLOC, &ioas) < 0) fail("IOMMU_IOAS_ALLOC: %s", err());

  iommu_test_cmd md = test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN, ioas.out_ioas_id);
  if (ioctl(g_fd, IOMMU_TEST_CMD, &md) < 0) {
    if (errno == ENOTTY) skip("IOMMU_TEST_CMD is ENOTTY: kernel without CONFIG_IOMMUFD_TEST");
    fail("IOMMU_TEST_OP_MOCK_DOMAIN(ioas %u): %s", ioas.out_ioas_id, err());
  }
  uint32_t stdev = md.mock_domain.out_stdev_id, idev = md.mock_domain.out_idev_id;
  uint32_t auto_hwpt = md.mock_domain.out_hwpt_id;

  iommu_fault_alloc fa{};
  fa.size = sizeof fa;
  if (ioctl(g_fd, IOMMU_FAULT_QUEUE_ALLOC, &fa) < 0) fail("IOMMU_FAULT_QUEUE_ALLOC: %s", err());
  Fd fault_fd(int(fa.out_fault_fd));

  iommu_hwpt_alloc ha{};
  ha.size = sizeof ha;
  ha.flags = IOMMU_HWPT_FAULT_ID_VALID;
  ha.dev_id = idev;
  ha.pt_id = ioas.out_ioas_id;
  ha.data_type = IOMMU_HWPT_DATA_NONE;
  ha.fault_id = fa.out_fault_id;
  if (ioctl(g_fd, IOMMU_HWPT_ALLOC, &ha) < 0)
    fail("IOMMU_HWPT_ALLOC(paging, FAULT_ID_VALID): %s%s", err(),
         errno == EOPNOTSUPP ? " (kernel < 6.13 allows faults on nested HWPTs only)" : "");
  uint32_t iopf_hwpt = ha.out_hwpt_id;

  iommu_test_cmd rep = test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev);
  rep.mock_domain_replace.pt_id = iopf_hwpt;
  if (ioctl(g_fd, IOMMU_TEST_CMD, &rep) < 0) fail("MOCK_DOMAIN_REPLACE(stdev %u -> hwpt %u): %s", stdev, iopf_hwpt, err());
  uint64_t t_setup = now_us();

  const long page = sysconf(_SC_PAGESIZE);
  auto* buf = static_cast<uint8_t*>(mmap(nullptr, size_t(page) * 2, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
  if (buf == MAP_FAILED) fail("mmap: %s", err());

  // 1. Fault, resolve by mapping, answer SUCCESS.
  const uint32_t rw = IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE;
  uint64_t ta = now_us();
  trigger(idev, kFaultIova, rw);
  iommu_hwpt_pgfault f = read_fault(fault_fd.get(), idev, kFaultIova, rw);
  map_fixed(ioas.out_ioas_id, buf, kFaultIova, uint64_t(page));
  check_map(iopf_hwpt, kFaultIova, buf, uint64_t(page));
  respond(fault_fd.get(), f.cookie, IOMMUFD_PAGE_RESP_SUCCESS);
  uint64_t first_us = now_us() - ta;
  uint32_t first_cookie = f.cookie;

  // 2. A fault answered INVALID completes: the write is accepted and consumes the cookie.
  const uint64_t bad_iova = kFaultIova + 0x100000;
  trigger(idev, bad_iova, IOMMU_PGFAULT_PERM_READ);
  iommu_hwpt_pgfault g = read_fault(fault_fd.get(), idev, bad_iova, IOMMU_PGFAULT_PERM_READ);
  respond(fault_fd.get(), g.cookie, IOMMUFD_PAGE_RESP_INVALID);
  iommu_hwpt_page_response again{g.cookie, IOMMUFD_PAGE_RESP_SUCCESS};
  if (write(fault_fd.get(), &again, sizeof again) >= 0 || errno != EINVAL)
    fail("answering cookie %u twice was not refused with EINVAL (%s)", g.cookie, err());
  pollfd p{fault_fd.get(), POLLIN, 0};
  if (poll(&p, 1, 0) != 0 && (p.revents & POLLIN)) fail("fault fd still readable with no fault queued");
  iommu_hwpt_pgfault none[1];
  ssize_t n = read(fault_fd.get(), none, sizeof none);
  if (n != 0) fail("read with no fault queued returned %zd, want 0 (%s)", n, n < 0 ? err() : "data");

  // 3. Timed rounds: trigger -> poll -> read -> map -> check -> respond -> unmap.
  unmap(ioas.out_ioas_id, kFaultIova, uint64_t(page));
  uint64_t sum = 0, worst = 0;
  for (unsigned i = 0; i < kTimedRounds; i++) {
    uint64_t iova = kFaultIova + uint64_t(i % 16) * uint64_t(page);
    uint64_t t = now_us();
    trigger(idev, iova, rw);
    iommu_hwpt_pgfault h = read_fault(fault_fd.get(), idev, iova, rw);
    map_fixed(ioas.out_ioas_id, buf + page, iova, uint64_t(page));
    check_map(iopf_hwpt, iova, buf + page, uint64_t(page));
    respond(fault_fd.get(), h.cookie, IOMMUFD_PAGE_RESP_SUCCESS);
    unmap(ioas.out_ioas_id, iova, uint64_t(page));
    uint64_t dt = now_us() - t;
    sum += dt;
    worst = std::max(worst, dt);
  }

  // Teardown. The auto HWPT from MOCK_DOMAIN was freed when the device moved off it;
  // destroying the mock device detaches it, then the rest can go.
  destroy(stdev, "mock device");
  destroy(iopf_hwpt, "iopf hwpt");
  fault_fd.reset();
  destroy(fa.out_fault_id, "fault");
  destroy(ioas.out_ioas_id, "ioas");
  munmap(buf, size_t(page) * 2);

  info("ok: mock idev %u, auto hwpt %u replaced by fault %u + iopf hwpt %u; record {flags LAST_PAGE, dev_id %u, pasid 0, grpid 0x%x, "
       "perm RW, addr 0x%llx, cookie %u}; SUCCESS round trip %llu us; INVALID answer completed "
       "(cookie %u consumed, repeat EINVAL); %u rounds trigger..unmap avg %llu us, max %llu us; "
       "setup %llu us",
       idev, auto_hwpt, fa.out_fault_id, iopf_hwpt, idev, kGrpid, static_cast<unsigned long long>(kFaultIova),
       first_cookie, static_cast<unsigned long long>(first_us), g.cookie, kTimedRounds,
       static_cast<unsigned long long>(sum / kTimedRounds), static_cast<unsigned long long>(worst),
       static_cast<unsigned long long>(t_setup - t0));
  return 0;
}
