// ViommuModel: MAP and UNMAP against the per-domain shadow interval map. The shadow always
// covers what the host holds: a MAP is recorded before the host call and erased if the host
// refuses; an UNMAP forgets a mapping only once the host has unmapped it.
#include <cerrno>
#include <iterator>

#include "pinless/virtio/iommu/model.h"

namespace pinless::virtio {

using namespace viommu;

namespace {

bool intersects(uint64_t lo, uint64_t hi, uint64_t lo2, uint64_t hi2) {
  return lo <= hi2 && lo2 <= hi;
}

}  // namespace

bool ViommuModel::overlaps(const std::map<uint64_t, Mapping>& m, uint64_t lo, uint64_t hi) {
  // Mappings never overlap, so only the last one starting at or before `hi` can reach `lo`.
  auto it = m.upper_bound(hi);
  if (it == m.begin()) return false;
  return std::prev(it)->second.virt_end >= lo;
}

ViommuModel::Code ViommuModel::do_map(std::span<const uint8_t> req) {
  // Trusts nothing: every field below is the guest's.
  const uint32_t domain = le32(req, map::kDomain);
  const uint64_t virt_start = le64(req, map::kVirtStart);
  const uint64_t virt_end = le64(req, map::kVirtEnd);
  const uint64_t phys_start = le64(req, map::kPhysStart);
  const uint32_t flags = le32(req, map::kFlags);
  log_->debug("MAP domain {} {:#x}-{:#x} -> {:#x} flags {:#x}", domain, virt_start, virt_end,
              phys_start, flags);

  if (flags & ~map::kKnownFlags) return Code::kInval;
  if ((flags & map::kFlagMmio) && !(features_ & kFMmio)) return Code::kInval;
  auto dit = domains_.find(domain);
  if (dit == domains_.end()) return Code::kNoent;
  Domain& dom = dit->second;
  if (dom.bypass) return Code::kInval;
  if (virt_end < virt_start) return Code::kRange;
  const uint64_t last = virt_end - virt_start;  // size - 1
  if (last == ~0ull) return Code::kRange;       // 2^64 bytes: no size can say it
  if (phys_start > ~0ull - last) return Code::kRange;  // phys end beyond 2^64
  const uint64_t g = granule_ - 1;
  // virt_end + 1 wraps to 0 at the top of the space, which is aligned.
  if ((virt_start & g) || (phys_start & g) || ((virt_end + 1) & g)) return Code::kRange;
  if (virt_start < cfg_.input_start || virt_end > cfg_.input_end) return Code::kRange;
  if (intersects(virt_start, virt_end, cfg_.msi_start, cfg_.msi_end)) return Code::kRange;
  for (uint32_t ep : dom.endpoints) {
    for (const auto& [lo, hi] : reserved_of(ep, endpoints_.at(ep))) {
      if (intersects(virt_start, virt_end, lo, hi)) return Code::kRange;
    }
  }
  if (overlaps(dom.mappings, virt_start, virt_end)) return Code::kInval;
  if (dom.mappings.size() >= cfg_.max_mappings_per_domain) return Code::kNomem;

  auto mit = dom.mappings.emplace(virt_start, Mapping{virt_end, phys_start, flags}).first;
  const DmaAccess access{(flags & map::kFlagRead) != 0, (flags & map::kFlagWrite) != 0};
  // Neither read nor write: the kernel would refuse such a map, and it grants nothing anyway;
  // it is recorded so that overlaps and UNMAP behave as the guest expects.
  if (access.read || access.write) {
    Status s = host_.map(domain, Range<Iova>{Iova(virt_start), last + 1}, Gpa(phys_start), access);
    if (!s) {
      dom.mappings.erase(mit);
      return host_failure(HostOp::kMap, s.error());
    }
  }
  ++mapping_count_;
  return Code::kOk;
}

ViommuModel::Code ViommuModel::do_unmap(std::span<const uint8_t> req) {
  const uint32_t domain = le32(req, unmap::kDomain);
  const uint64_t virt_start = le64(req, unmap::kVirtStart);
  const uint64_t virt_end = le64(req, unmap::kVirtEnd);
  log_->debug("UNMAP domain {} {:#x}-{:#x}", domain, virt_start, virt_end);

  auto dit = domains_.find(domain);
  if (dit == domains_.end()) return Code::kNoent;
  Domain& dom = dit->second;
  if (dom.bypass) return Code::kInval;
  if (virt_end < virt_start) return Code::kRange;

  auto& m = dom.mappings;
  // [first, stop) are the mappings the range touches. A mapping that starts before the range
  // or ends after it would be split: refuse, removing nothing.
  auto first = m.upper_bound(virt_start);
  if (first != m.begin()) {
    auto prev = std::prev(first);
    if (prev->second.virt_end >= virt_start) {
      if (prev->first < virt_start) return Code::kRange;
      first = prev;
    }
  }
  auto stop = m.upper_bound(virt_end);
  if (first != stop && std::prev(stop)->second.virt_end > virt_end) return Code::kRange;

  for (auto it = first; it != stop;) {
    const uint64_t start = it->first;
    const Mapping& mp = it->second;
    if (mp.flags & (map::kFlagRead | map::kFlagWrite)) {
      Status s = host_.unmap(domain, Range<Iova>{Iova(start), mp.virt_end - start + 1});
      // ENOENT: the host holds nothing there any more, which is what UNMAP wants.
      if (!s && s.error().err() != ENOENT) return host_failure(HostOp::kUnmap, s.error());
    }
    it = m.erase(it);
    --mapping_count_;
  }
  return Code::kOk;
}

}  // namespace pinless::virtio
