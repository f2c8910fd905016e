// libFuzzer target: I/O page fault records (device, so guest, input) as the iommufd fault
// queue delivers them, through FaultQueue into FaultEngine. The input sets up 1-4 fault regions
// (page size, size, perms, premap window policy), a pin limit, reclaim on or off and the
// queue's read sizes, then runs steps: a batch of records (any flags, dev_id, pasid, grpid,
// perm, address inside or outside the regions, length, cookie) drained by on_readable() with
// MAP/UNMAP failures, refused answers and short writes injected; a policy change; a region
// pinned whole (as a switch to dma=pin does) or made faultable again; one region's windows or
// all of them taken back. Checked, abort() on a violation: one answer per group, in order, with
// the group's cookie; a group with a record outside the regions or asking more than its region
// allows is INVALID, and a SUCCESS group's pages are mapped when it is answered; every MAP lies
// inside its region at the region's host address and perms, overlaps nothing mapped and keeps
// what is mapped under the pin limit; every UNMAP is exactly one earlier MAP; after every step
// the engine's page bitmaps and window count and PinAccounting agree with what the backend
// holds. Built and run by scripts/fuzz.
#include <fuzzer/FuzzedDataProvider.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <source_location>
#include <vector>

#include "fuzz_input.h"
#include "fakes/read_write_sys.h"
#include "pinless/iommu/fault_queue.h"
#include "pinless/iommu/uapi/iommufd.h"

using namespace pinless;
using namespace pinless::iommu;

namespace {

void check(bool ok, std::source_location at = std::source_location::current()) { fuzz::check(ok, "fault_records", at); }

struct Region {
  uint64_t gpa = 0, size = 0, ps = 0, hva = 0;
  Perm perm = Perm::kReadWrite;
  bool pinned = false;
};

// The host IOMMU as iommufd behaves, and the engine's contract with it: a MAP lies inside one
// region at its host address and perms, overlaps nothing (iommufd: EEXIST) and stays under the
// pin limit (the kernel's memlock limit, which it mirrors); an UNMAP is exactly one earlier MAP
// of the engine. MAP and UNMAP failures are injected.
class FakeBackend final : public DmaBackend {
 public:
  struct Map {
    uint64_t size;
    bool pinned;  // the whole region, mapped by its owner (dma=pin), not by the engine
  };
  explicit FakeBackend(const std::vector<Region>& regions) : regions_(regions) {}

  Status map(Iova iova, Hva hva, uint64_t size, Perm perm) override {
    const Region* r = region_of(iova.value());
    check(r && size > 0 && size % r->ps == 0 && size <= r->gpa + r->size - iova.value());
    check(hva.value() == r->hva + (iova.value() - r->gpa) && perm == r->perm);
    if ((fail_maps >> (map_calls++ % 32)) & 1) return fail("map", ENOMEM, "injected");
    check(!overlaps(iova.value(), size));  // iommufd: EEXIST
    check(limit == 0 || mapped_bytes() + size <= limit);  // the kernel's memlock limit, mirrored
    maps[iova.value()] = {size, false};
    return {};
  }
  Status unmap(Iova iova, uint64_t size) override {
    if ((fail_unmaps >> (unmap_calls++ % 32)) & 1) return fail("unmap", EIO, "injected");
    auto it = maps.find(iova.value());
    check(it != maps.end() && it->second.size == size && !it->second.pinned);
    maps.erase(it);
    return {};
  }
  Result<std::vector<Range<Iova>>> iova_ranges() override { return std::vector<Range<Iova>>{}; }
  uint64_t mapped_bytes() const override {
    uint64_t n = 0;
    for (const auto& [_, m] : maps) n += m.size;
    return n;
  }
  BackendKind kind() const override { return BackendKind::kIommufd; }

  void pin_whole(const Region& r) {
    check(!overlaps(r.gpa, r.size));
    maps[r.gpa] = {r.size, true};
  }
  void unpin_whole(const Region& r) {
    check(maps.count(r.gpa) && maps[r.gpa].pinned);
    maps.erase(r.gpa);
  }
  bool mapped(uint64_t addr) const {
    auto it = maps.upper_bound(addr);
    return it != maps.begin() && addr - std::prev(it)->first < std::prev(it)->second.size;
  }
  const Region* region_of(uint64_t addr) const {
    for (const auto& r : regions_) {
      if (addr >= r.gpa && addr - r.gpa < r.size) return &r;
    }
    return nullptr;
  }

  std::map<uint64_t, Map> maps;
  uint64_t limit = 0;
  uint32_t fail_maps = 0, fail_unmaps = 0;  // bit k: fail the k-th call of this batch
  unsigned map_calls = 0, unmap_calls = 0;

 private:
  bool overlaps(uint64_t lo, uint64_t size) const {
    auto it = maps.lower_bound(lo);
    if (it != maps.end() && it->first < lo + size) return true;
    return it != maps.begin() && std::prev(it)->first + std::prev(it)->second.size > lo;
  }
  const std::vector<Region>& regions_;
};

// What the oracle knows about one group: its cookie and whether it must be INVALID.
struct Group {
  std::vector<iommu_hwpt_pgfault> records;
  bool must_fail = false;
  bool refuse = false;  // the kernel refuses its answer (EINVAL: the device was detached)
};

// The kernel side of the fault fd, behind the Sys seam: read() hands out whole groups of the
// current batch, write() takes 8-byte answers and checks each against the group it answers.
class FaultFd final : public testing::ReadWriteSys {
 public:
  explicit FaultFd(const FakeBackend& backend) : backend_(backend) {}

  std::deque<Group> pending;  // the current batch, not read yet
  std::deque<Group> waiting;  // read, not answered yet
  size_t max_answers_per_write = ~size_t{0};

  ssize_t read(int, void* buf, size_t n) override {
    check(n % sizeof(iommu_hwpt_pgfault) == 0);
    size_t done = 0;
    while (!pending.empty() && done + pending.front().records.size() * sizeof(iommu_hwpt_pgfault) <= n) {
      for (const auto& r : pending.front().records) {
        std::memcpy(static_cast<uint8_t*>(buf) + done, &r, sizeof r);
        done += sizeof r;
      }
      waiting.push_back(std::move(pending.front()));
      pending.pop_front();
    }
    if (done == 0) return pending.empty() ? -EAGAIN : -EINVAL;  // the first group does not fit
    return static_cast<ssize_t>(done);
  }
  ssize_t write(int, const void* buf, size_t n) override {
    check(n > 0 && n % sizeof(iommu_hwpt_page_response) == 0);
    size_t done = 0;
    for (; done < n && done / 8 < max_answers_per_write; done += 8) {
      iommu_hwpt_page_response a;
      std::memcpy(&a, static_cast<const uint8_t*>(buf) + done, sizeof a);
      check(!waiting.empty());  // an answer for no group
      const Group& g = waiting.front();
      check(a.cookie == g.records.front().cookie);
      check(a.code == IOMMUFD_PAGE_RESP_SUCCESS || a.code == IOMMUFD_PAGE_RESP_INVALID);
      if (g.refuse && done > 0) break;  // the answers before it are taken; it fails next call
      check(!(g.must_fail && a.code == IOMMUFD_PAGE_RESP_SUCCESS));
      if (a.code == IOMMUFD_PAGE_RESP_SUCCESS) {
        for (const auto& r : g.records) check(backend_.mapped(r.addr));
      }
      bool refused = g.refuse;
      waiting.pop_front();
      if (refused) return -EINVAL;
    }
    return static_cast<ssize_t>(done);
  }


 private:
  const FakeBackend& backend_;
};

FaultPolicy policy_from(FuzzedDataProvider& in) {
  FaultPolicy p;
  const int size = in.ConsumeIntegralInRange(0, 3);
  p.premap_pages = size == 3 ? kMaxPremapPages : in.ConsumeIntegralInRange<uint64_t>(1, size == 2 ? 600 : 16);
  p.window = static_cast<WindowPolicy>(in.ConsumeIntegralInRange(0, 2));
  p.max_hint_pages = in.ConsumeIntegralInRange<uint64_t>(1, 1024);
  return p;
}

// One record, mostly inside a region (sometimes just past its end), else anywhere.
iommu_hwpt_pgfault record_from(FuzzedDataProvider& in, const std::vector<Region>& regions, uint32_t prev_cookie) {
  iommu_hwpt_pgfault r{};
  const uint8_t bits = in.ConsumeIntegral<uint8_t>();
  r.flags = (bits & 1 ? IOMMU_PGFAULT_FLAGS_LAST_PAGE : 0) | (bits & 2 ? IOMMU_PGFAULT_FLAGS_PASID_VALID : 0);
  r.perm = bits >> 4;  // READ, WRITE, EXEC, PRIV in any combination
  r.dev_id = in.ConsumeIntegralInRange<uint32_t>(0, 3);
  r.pasid = in.ConsumeIntegralInRange<uint32_t>(0, 2);
  r.grpid = in.ConsumeIntegralInRange<uint32_t>(0, 511);
  const uint8_t where = in.ConsumeIntegral<uint8_t>();
  if (where < 240) {
    const Region& rg = regions[where % regions.size()];
    uint64_t page = in.ConsumeIntegralInRange<uint64_t>(0, rg.size / rg.ps);
    r.addr = rg.gpa + page * rg.ps + in.ConsumeIntegralInRange<uint64_t>(0, rg.ps - 1);
  } else {
    r.addr = in.ConsumeIntegral<uint64_t>();
  }
  r.length = in.ConsumeBool() ? 0 : in.ConsumeIntegral<uint32_t>();
  const uint8_t c = (bits >> 2) & 3;  // the same group goes on, a new one starts, or anything
  r.cookie = c < 2 ? prev_cookie : c == 2 ? prev_cookie + 1 : in.ConsumeIntegral<uint32_t>();
  return r;
}

// Whether the engine must answer a group holding `r` INVALID: outside every region, or asking
// for a permission the region does not grant (exec needs read).
bool must_fail(const iommu_hwpt_pgfault& r, const FakeBackend& be) {
  const Region* rg = be.region_of(r.addr);
  if (!rg) return true;
  bool read = r.perm & (IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_EXEC);
  bool write = r.perm & IOMMU_PGFAULT_PERM_WRITE;
  return (read && !allows(rg->perm, Perm::kRead)) || (write && !allows(rg->perm, Perm::kWrite));
}

// Cuts a batch into groups as the engine must: at LAST_PAGE or where the cookie changes.
std::deque<Group> groups_of(const std::vector<iommu_hwpt_pgfault>& batch, const FakeBackend& be) {
  std::deque<Group> out;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (i == 0 || (batch[i - 1].flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE) || batch[i].cookie != batch[i - 1].cookie) {
      out.emplace_back();
    }
    out.back().records.push_back(batch[i]);
    out.back().must_fail |= must_fail(batch[i], be);
  }
  return out;
}

struct Rig {
  std::vector<Region> regions;
  PinAccounting acct;
  FaultEngine engine{acct};
  FakeBackend backend{regions};
  FaultFd fd{backend};
  std::unique_ptr<FaultQueue> queue;
  size_t max_records = 0;

  // The engine's view (bitmaps, windows, charges) against what the backend holds.
  void check_state() {
    uint64_t fault_bytes = 0, static_bytes = 0, windows = 0;
    for (const auto& [iova, m] : backend.maps) {
      (m.pinned ? static_bytes : fault_bytes) += m.size;
      windows += !m.pinned;
    }
    check(acct.fault_bytes() == fault_bytes && acct.static_bytes() == static_bytes);
    check(engine.window_count() == windows);
    check(acct.limit() == 0 || acct.total() <= acct.limit());
    for (uint32_t i = 0; i < regions.size(); ++i) {
      const Region& r = regions[i];
      const PageBitmap& bits = engine.mapped(i);
      uint64_t set = 0;
      for (uint64_t p = 0; p < r.size / r.ps; ++p) {
        bool m = backend.mapped(r.gpa + p * r.ps);
        check(bits.test(p) == m);
        set += m;
      }
      check(bits.count_set() == set);
      check(acct.region_bytes(i) == (r.pinned ? 0 : set * r.ps));
    }
  }

  void run_batch(FuzzedDataProvider& in) {
    std::vector<iommu_hwpt_pgfault> batch(in.ConsumeIntegralInRange<size_t>(1, 48));
    uint32_t cookie = in.ConsumeIntegral<uint8_t>();
    for (auto& r : batch) cookie = (r = record_from(in, regions, cookie)).cookie;
    fd.pending = groups_of(batch, backend);
    for (auto& g : fd.pending) g.refuse = in.ConsumeIntegralInRange(0, 15) == 0;
    fd.max_answers_per_write = in.ConsumeBool() ? ~size_t{0} : in.ConsumeIntegralInRange<size_t>(1, 4);
    backend.fail_maps = in.ConsumeBool() ? in.ConsumeIntegral<uint32_t>() : 0;
    backend.fail_unmaps = in.ConsumeBool() ? in.ConsumeIntegral<uint32_t>() : 0;
    backend.map_calls = backend.unmap_calls = 0;
    // Level-triggered: called again while the fd is readable; each call must make progress.
    while (!fd.pending.empty()) {
      size_t before = fd.pending.size();
      auto d = queue->on_readable();
      check(fd.waiting.empty());  // every group read was answered
      if (!d) {
        // Only a group larger than the read buffer can grow to makes the fd itself fail.
        check(fd.pending.front().records.size() > max_records);
        fd.pending.clear();
        break;
      }
      check(fd.pending.size() < before);
    }
    backend.fail_maps = backend.fail_unmaps = 0;
  }

  // As DmaDomain's switch to dma=pin: refused over the limit, else windows taken, region mapped.
  void pin(uint32_t i) {
    Region& r = regions[i];
    uint64_t have = acct.region_bytes(i);
    if (r.pinned || (r.size > have && !acct.fits(r.size - have))) return;
    queue->unmap_region(i);
    backend.pin_whole(r);
    acct.charge_static(r.size);
    engine.set_pinned(i, true);
    r.pinned = true;
  }
  void unpin(uint32_t i) {
    Region& r = regions[i];
    if (!r.pinned) return;
    engine.set_pinned(i, false);
    backend.unpin_whole(r);
    acct.release_static(r.size);
    r.pinned = false;
  }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  set_log_level("off");  // the engine warns per bad record; the checks are what matter here
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  Rig rig;
  const int nregions = in.ConsumeIntegralInRange(1, 4);
  uint64_t at = 0;
  for (int i = 0; i < nregions; ++i) {
    static constexpr uint64_t kPageSizes[] = {kPageSize, kPageSize, kPageSize, kPageSize,
                                              2 * kPageSize, 16 * kPageSize, 2 * kMiB, 2 * kMiB};
    Region r;
    r.ps = kPageSizes[in.ConsumeIntegralInRange(0, 7)];
    r.gpa = align_up(at, r.ps) + r.ps * in.ConsumeIntegralInRange(0, i == 0 ? 64 : 2);
    r.size = r.ps * in.ConsumeIntegralInRange<uint64_t>(1, in.ConsumeBool() ? 64 : r.ps == 2 * kMiB ? 8 : 1024);
    r.hva = 0x7f0000000000 + (uint64_t(i) << 36);
    r.perm = static_cast<Perm>(in.ConsumeIntegralInRange(1, 3));
    at = r.gpa + r.size;
    rig.regions.push_back(r);
    FaultRegionSpec spec{"r" + std::to_string(i), {Gpa(r.gpa), r.size}, Hva(r.hva), r.ps, policy_from(in), r.perm};
    auto added = rig.engine.add_region(spec);
    check(added && *added == uint32_t(i));
  }
  if (in.ConsumeBool()) rig.acct.set_limit(kPageSize * in.ConsumeIntegralInRange<uint64_t>(1, in.ConsumeBool() ? 32 : 2048));
  rig.backend.limit = rig.acct.limit();
  rig.engine.set_reclaim(in.ConsumeBool());
  FaultQueue::Options opt;
  opt.batch_records = in.ConsumeIntegralInRange<size_t>(1, 64);
  opt.max_records = in.ConsumeIntegralInRange<size_t>(opt.batch_records, 128);
  opt.max_reads = in.ConsumeIntegralInRange(1, 16);
  rig.max_records = opt.max_records;
  rig.queue = std::make_unique<FaultQueue>(rig.fd, 3, rig.engine, rig.backend, opt);

  for (int steps = 0; steps < 64 && in.remaining_bytes() > 0; ++steps) {
    const uint32_t i = in.ConsumeIntegralInRange<uint32_t>(0, nregions - 1);
    switch (in.ConsumeIntegralInRange(0, 11)) {
      case 0: {
        FaultPolicy p = policy_from(in);
        if (in.ConsumeIntegralInRange(0, 7) == 0) p.premap_pages = in.ConsumeIntegralInRange<uint64_t>(0, 1u << 20);
        if (in.ConsumeIntegralInRange(0, 7) == 0) p.max_hint_pages = 0;
        bool valid = p.premap_pages >= 1 && p.premap_pages <= kMaxPremapPages && p.max_hint_pages >= 1;
        check(bool(rig.engine.set_policy(i, p)) == valid);
        check(!rig.engine.set_policy(nregions, p));
        break;
      }
      case 1: rig.pin(i); break;
      case 2: rig.unpin(i); break;
      case 3: rig.queue->unmap_region(i); break;
      case 4: rig.queue->unmap_all(); break;
      case 5: rig.engine.set_reclaim(in.ConsumeBool()); break;
      default: rig.run_batch(in); break;
    }
    rig.check_state();
  }
  rig.queue->unmap_all();
  for (uint32_t i = 0; i < rig.regions.size(); ++i) rig.unpin(i);
  rig.check_state();
  check(rig.backend.maps.empty() && rig.acct.total() == 0);
  return 0;
}
