#include "pinless/iommu/fault_queue.h"

#include <cerrno>
#include <chrono>
#include <cstring>

#include "pinless/base/log.h"
#include "pinless/iommu/uapi/iommufd.h"

namespace pinless::iommu {

static_assert(FaultRecord::kLastPage == IOMMU_PGFAULT_FLAGS_LAST_PAGE);
static_assert(FaultRecord::kPasidValid == IOMMU_PGFAULT_FLAGS_PASID_VALID);
static_assert(FaultRecord::kPermRead == IOMMU_PGFAULT_PERM_READ);
static_assert(FaultRecord::kPermWrite == IOMMU_PGFAULT_PERM_WRITE);
static_assert(FaultRecord::kPermExec == IOMMU_PGFAULT_PERM_EXEC);
static_assert(FaultRecord::kPermPriv == IOMMU_PGFAULT_PERM_PRIV);
static_assert(static_cast<uint32_t>(FaultCode::kSuccess) == IOMMUFD_PAGE_RESP_SUCCESS);
static_assert(static_cast<uint32_t>(FaultCode::kInvalid) == IOMMUFD_PAGE_RESP_INVALID);

namespace {
uint64_t now_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}
constexpr size_t kRec = sizeof(iommu_hwpt_pgfault);
constexpr size_t kResp = sizeof(iommu_hwpt_page_response);
}  // namespace

FaultQueue::FaultQueue(Sys& sys, int fault_fd, FaultEngine& engine, DmaBackend& backend, Options opt)
    : sys_(sys), fd_(fault_fd), engine_(engine), backend_(backend), opt_(opt) {
  buf_.resize(opt_.batch_records * kRec);
}

Result<size_t> FaultQueue::read_batch() {
  for (;;) {
    ssize_t n = sys_.read(fd_, buf_.data(), buf_.size());
    if (n == -EINVAL && buf_.size() < opt_.max_records * kRec) {
      // The first queued group does not fit: the kernel only hands out whole groups.
      buf_.resize(std::min(buf_.size() * 2, opt_.max_records * kRec));
      continue;
    }
    if (n == -EAGAIN || n == 0) return 0;
    if (n < 0) return fail("read", static_cast<int>(-n), "iommufd fault queue");
    if (n % kRec != 0) return fail("read", EPROTO, "iommufd fault queue returned a partial record");
    size_t count = static_cast<size_t>(n) / kRec;
    records_.resize(count);
    for (size_t i = 0; i < count; ++i) {
      iommu_hwpt_pgfault raw;
      std::memcpy(&raw, buf_.data() + i * kRec, kRec);
      records_[i] = FaultRecord{raw.flags, raw.dev_id, raw.pasid, raw.grpid, raw.perm, Iova(raw.addr), raw.length, raw.cookie};
    }
    return count;
  }
}

Result<uint64_t> FaultQueue::answer(const std::vector<GroupResponse>& responses) {
  out_.resize(responses.size() * kResp);
  for (size_t i = 0; i < responses.size(); ++i) {
    iommu_hwpt_page_response r{.cookie = responses[i].cookie, .code = static_cast<uint32_t>(responses[i].code)};
    std::memcpy(out_.data() + i * kResp, &r, kResp);
  }
  size_t off = 0;
  uint64_t refused = 0;
  while (off < out_.size()) {
    ssize_t n = sys_.write(fd_, out_.data() + off, out_.size() - off);
    if (n > 0) {
      off += static_cast<size_t>(n) - static_cast<size_t>(n) % kResp;
      continue;
    }
    if (n == -EINVAL) {
      // The kernel refused this response (unknown cookie: e.g. the device was detached and
      // its groups auto-answered). The ones before it are done; skip it, answer the rest.
      uint32_t cookie;
      std::memcpy(&cookie, out_.data() + off, sizeof(cookie));
      // Rate-limited: a detach with thousands of groups in flight refuses every one of them.
      if (refused_warn_.allow()) {
        logger("iommu")->warn("fault response for cookie {} refused (EINVAL; device detached?); skipping it", cookie);
      }
      refused++;
      off += kResp;
      continue;
    }
    return fail("write", n < 0 ? static_cast<int>(-n) : EIO, "iommufd fault queue responses");
  }
  return refused;
}

Result<FaultQueue::Drained> FaultQueue::on_readable() {
  Drained d;
  for (int i = 0; i < opt_.max_reads; ++i) {
    size_t n = PINLESS_TRY(read_batch());
    if (n == 0) return d;
    d.reads++;
    d.records += n;
    engine_.plan(std::span<const FaultRecord>(records_.data(), n), plan_);
    for (const auto& run : plan_.unmaps) {
      uint64_t t0 = now_ns();
      auto st = backend_.unmap(run.iova, run.size);
      engine_.note_unmap(run, now_ns() - t0);
      if (!st) {
        logger("iommu")->error("reclaim: {}", st.error().message());
        engine_.unmap_failed(run, plan_);
      }
    }
    for (const auto& run : plan_.maps) {
      uint64_t t0 = now_ns();
      auto st = backend_.map(run.iova, run.hva, run.size, run.perm);
      engine_.note_map(run, now_ns() - t0);
      if (!st) {
        logger("iommu")->error("fault map: {}", st.error().message());
        engine_.map_failed(run);
      }
    }
    engine_.finish(plan_);
    d.groups += plan_.responses.size();
    d.maps += plan_.maps.size();
    d.unmaps += plan_.unmaps.size();
    for (const auto& r : plan_.responses) d.invalid += (r.code != FaultCode::kSuccess);
    d.refused += PINLESS_TRY(answer(plan_.responses));
    // A short read: the queue was empty (or the next group did not fit the space left, in
    // which case the fd stays readable and the level-triggered loop calls again).
    if (n * kRec < buf_.size()) return d;
  }
  d.more = true;
  return d;
}

void FaultQueue::unmap_all() { unmap_runs(engine_.take_all_windows(), "teardown"); }

void FaultQueue::unmap_region(uint32_t region) { unmap_runs(engine_.take_windows(region), "policy switch"); }

void FaultQueue::unmap_runs(const std::vector<DmaRun>& runs, const char* why) {
  for (const auto& run : runs) {
    uint64_t t0 = now_ns();
    auto st = backend_.unmap(run.iova, run.size);
    engine_.note_unmap(run, now_ns() - t0);
    if (!st) logger("iommu")->error("{}: {}", why, st.error().message());
  }
}

}  // namespace pinless::iommu
