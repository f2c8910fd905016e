#include "pinless/iommu/iommufd_backend.h"

#include <cerrno>

#include <fmt/format.h>

#include "pinless/iommu/dma_errors.h"
#include "pinless/iommu/uapi/iommufd.h"

namespace pinless::iommu {
namespace {
uint32_t perm_flags(Perm perm) {
  uint32_t f = 0;
  if (allows(perm, Perm::kRead)) f |= IOMMU_IOAS_MAP_READABLE;
  if (allows(perm, Perm::kWrite)) f |= IOMMU_IOAS_MAP_WRITEABLE;
  return f;
}
}  // namespace

Result<std::unique_ptr<IommufdBackend>> IommufdBackend::create(Iommufd& ctx) {
  auto ioas = PINLESS_TRY(ctx.ioas_alloc());
  return std::unique_ptr<IommufdBackend>(new IommufdBackend(ctx, std::move(ioas)));
}

Status IommufdBackend::map(Iova iova, Hva hva, uint64_t size, Perm perm) {
  iommu_ioas_map m{};
  m.size = sizeof(m);
  m.flags = IOMMU_IOAS_MAP_FIXED_IOVA | perm_flags(perm);
  m.ioas_id = ioas_id();
  m.user_va = hva.value();
  m.length = size;
  m.iova = iova.value();
  if (int r = ctx_.sys().ioctl(ctx_.fd(), IOMMU_IOAS_MAP, &m); r < 0) {
    MemlockState mem{mapped_bytes_, size, current_memlock_limit()};
    return std::unexpected(map_error(kind(), Error("IOMMU_IOAS_MAP", -r), iova, size, mem));
  }
  mapped_bytes_ += size;
  return {};
}

Status IommufdBackend::unmap(Iova iova, uint64_t size) {
  iommu_ioas_unmap u{};
  u.size = sizeof(u);
  u.ioas_id = ioas_id();
  u.iova = iova.value();
  u.length = size;
  // The context string is only built on failure: unmap is on the reclaim path of faults.
  auto ctx = [&] { return fmt::format("iova 0x{:x} size 0x{:x}", iova.value(), size); };
  if (int r = ctx_.sys().ioctl(ctx_.fd(), IOMMU_IOAS_UNMAP, &u); r < 0) return fail("IOMMU_IOAS_UNMAP", -r, ctx());
  mapped_bytes_ -= std::min<uint64_t>(mapped_bytes_, u.length);
  if (u.length != size) {
    return fail("IOMMU_IOAS_UNMAP", ENOENT, ctx() + fmt::format(": kernel unmapped 0x{:x} bytes", u.length));
  }
  return {};
}

Result<std::vector<Range<Iova>>> IommufdBackend::iova_ranges() {
  std::vector<iommu_iova_range> buf(8);
  // The count can change between calls (a device attaching), so retry a few times.
  for (int attempt = 0; attempt < 4; ++attempt) {
    iommu_ioas_iova_ranges q{};
    q.size = sizeof(q);
    q.ioas_id = ioas_id();
    q.num_iovas = static_cast<uint32_t>(buf.size());
    q.allowed_iovas = reinterpret_cast<uintptr_t>(buf.data());
    int r = ctx_.sys().ioctl(ctx_.fd(), IOMMU_IOAS_IOVA_RANGES, &q);
    if (r == -EMSGSIZE) {
      if (q.num_iovas <= buf.size()) return fail("IOMMU_IOAS_IOVA_RANGES", EMSGSIZE, "kernel gave no usable count");
      buf.resize(q.num_iovas);
      continue;
    }
    if (r < 0) return fail("IOMMU_IOAS_IOVA_RANGES", -r);
    if (q.num_iovas > buf.size()) return fail("IOMMU_IOAS_IOVA_RANGES", EPROTO, "count exceeds the array");
    std::vector<Range<Iova>> out;
    for (uint32_t i = 0; i < q.num_iovas; ++i) {
      if (buf[i].last < buf[i].start) return fail("IOMMU_IOAS_IOVA_RANGES", EPROTO, "range ends before it starts");
      out.push_back(range_from_inclusive(buf[i].start, buf[i].last));
    }
    return out;
  }
  return fail("IOMMU_IOAS_IOVA_RANGES", EMSGSIZE, "range count kept changing");
}

Status IommufdBackend::copy_from(const IommufdBackend& src, Iova src_iova, Iova dst_iova, uint64_t size, Perm perm) {
  iommu_ioas_copy c{};
  c.size = sizeof(c);
  c.flags = IOMMU_IOAS_MAP_FIXED_IOVA | perm_flags(perm);
  c.dst_ioas_id = ioas_id();
  c.src_ioas_id = src.ioas_id();
  c.length = size;
  c.dst_iova = dst_iova.value();
  c.src_iova = src_iova.value();
  if (int r = ctx_.sys().ioctl(ctx_.fd(), IOMMU_IOAS_COPY, &c); r < 0) {
    return fail("IOMMU_IOAS_COPY", -r,
                fmt::format("ioas {} 0x{:x} -> ioas {} 0x{:x} size 0x{:x}", src.ioas_id(), src_iova.value(), ioas_id(),
                            dst_iova.value(), size));
  }
  mapped_bytes_ += size;
  return {};
}

}  // namespace pinless::iommu
