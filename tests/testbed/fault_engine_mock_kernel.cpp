// fault_engine_mock: the kernel's view (see fault_engine_mock.h).
#include <linux/capability.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include "fault_engine_mock.h"

namespace pinless::testbed::engine_mock {

using namespace pinless::iommu;

iommu_test_cmd test_cmd(uint32_t op, uint32_t id) {
  iommu_test_cmd c{};
  c.size = sizeof c;
  c.op = op;
  c.id = id;
  return c;
}

int trigger_raw(uint64_t iova, uint32_t perm) {
  iommu_test_cmd c = test_cmd(IOMMU_TEST_OP_TRIGGER_IOPF, 0);
  c.trigger_iopf.dev_id = g_idev;
  c.trigger_iopf.pasid = 0;
  c.trigger_iopf.grpid = 1;
  c.trigger_iopf.perm = perm;
  c.trigger_iopf.addr = iova;
  return ioctl(g_fd, IOMMU_TEST_CMD, &c) < 0 ? errno : 0;
}

void trigger(uint64_t iova, uint32_t perm) {
  if (int e = trigger_raw(iova, perm)) testbed::fail("TRIGGER_IOPF(0x%llx): %s", ull(iova), std::strerror(e));
}

bool kernel_mapped(uint64_t iova, uint64_t len) {
  iommu_test_cmd c = test_cmd(IOMMU_TEST_OP_MD_CHECK_MAP, g_hwpt);
  c.check_map.iova = iova;
  c.check_map.length = len;
  c.check_map.uptr = reinterpret_cast<uint64_t>(g_ram + (iova - kRamGpa));
  if (ioctl(g_fd, IOMMU_TEST_CMD, &c) == 0) return true;
  if (errno != EINVAL) testbed::fail("MD_CHECK_MAP(hwpt %u, 0x%llx+0x%llx): %s", g_hwpt, ull(iova), ull(len), err());
  return false;
}

// Mapped exactly [first, first+len): all of it, and neither neighbouring page.
void expect_exact_window(const char* what, uint64_t first, uint64_t len) {
  if (!kernel_mapped(first, len)) testbed::fail("%s: window 0x%llx+0x%llx not mapped in the mock page table", what, ull(first), ull(len));
  if (first > kRamGpa && kernel_mapped(first - kPage, kPage)) testbed::fail("%s: page before the window 0x%llx is mapped", what, ull(first - kPage));
  if (first + len < kRamGpa + kRamSize && kernel_mapped(first + len, kPage))
    testbed::fail("%s: page after the window 0x%llx is mapped", what, ull(first + len));
}

int replace(uint32_t pt_id) {
  iommu_test_cmd c = test_cmd(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, g_stdev);
  c.mock_domain_replace.pt_id = pt_id;
  return ioctl(g_fd, IOMMU_TEST_CMD, &c) < 0 ? errno : 0;
}

long vmpin_delta_kb() { return proc_status_kb("VmPin") - g_vmpin_base; }

void expect_pin(const char* what, const PinAccounting& acct) {
  long d = vmpin_delta_kb();
  if (uint64_t(d) * 1024 != acct.total())
    testbed::fail("%s: VmPin +%ld kB but PinAccounting says %llu bytes", what, d, ull(acct.total()));
}

bool readable(int timeout_ms) {
  pollfd p{g_fault_fd, POLLIN, 0};
  int r = poll(&p, 1, timeout_ms);
  if (r < 0 && errno != EINTR) testbed::fail("poll fault fd: %s", err());
  return r > 0 && (p.revents & POLLIN);
}

void add(FaultQueue::Drained& acc, const FaultQueue::Drained& d) {
  acc.reads += d.reads;
  acc.records += d.records;
  acc.groups += d.groups;
  acc.invalid += d.invalid;
  acc.maps += d.maps;
  acc.unmaps += d.unmaps;
}

// Event loop: poll the fault fd, on_readable() when readable, until `groups` groups have
// been answered in total (acc) or the deadline passes.
bool serve_until(FaultQueue& q, FaultQueue::Drained& acc, uint64_t groups, int timeout_ms) {
  uint64_t deadline = now_us() + uint64_t(timeout_ms) * 1000;
  while (acc.groups < groups) {
    uint64_t t = now_us();
    if (t >= deadline) return false;
    if (!readable(int(std::min<uint64_t>((deadline - t) / 1000 + 1, 100)))) continue;
    auto d = q.on_readable();
    if (!d) testbed::fail("FaultQueue::on_readable: %s", d.error().message().c_str());
    add(acc, *d);
  }
  return true;
}

void expect_queue_idle(const char* what, uint32_t max_cookie) {
  if (readable(0)) testbed::fail("%s: fault fd still readable", what);
  iommu_hwpt_pgfault rec[1];
  ssize_t n = read(g_fault_fd, rec, sizeof rec);
  if (n != 0) testbed::fail("%s: read of an idle queue returned %zd (%s)", what, n, n < 0 ? err() : "data");
  // Cookies are allocated lowest-free from 1, so every waiting group has a cookie no larger
  // than the number of groups ever delivered: refusing all of them means none waits.
  for (uint32_t c = 1; c <= max_cookie; ++c) {
    iommu_hwpt_page_response r{c, IOMMUFD_PAGE_RESP_INVALID};
    if (write(g_fault_fd, &r, sizeof r) >= 0) testbed::fail("%s: cookie %u was still waiting for a response", what, c);
    if (errno != EINVAL) testbed::fail("%s: probing cookie %u: %s", what, c, err());
  }
}

bool set_ipc_lock(bool on) {
  __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct d[2]{};
  if (syscall(SYS_capget, &h, d) < 0) testbed::fail("capget: %s", err());
  uint32_t bit = 1u << (CAP_IPC_LOCK % 32);
  auto& w = d[CAP_IPC_LOCK / 32];
  if (!(w.permitted & bit)) return false;
  w.effective = on ? (w.effective | bit) : (w.effective & ~bit);
  if (syscall(SYS_capset, &h, d) < 0) testbed::fail("capset: %s", err());
  return true;
}

void attach_fault_hwpt() {
  if (int e = replace(g_hwpt)) testbed::fail("MOCK_DOMAIN_REPLACE(stdev %u -> hwpt %u): %s", g_stdev, g_hwpt, std::strerror(e));
}

}  // namespace pinless::testbed::engine_mock
