#include "pinless/iommu/type1_info.h"

#include <linux/vfio.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>

#include "pinless/iommu/dma_backend.h"

namespace pinless::iommu {
namespace {

constexpr const char* kOp = "VFIO_IOMMU_GET_INFO";
// Bound on chain length, on top of the strictly-increasing-offset rule.
constexpr int kMaxCaps = 64;

template <typename T>
T load(std::span<const uint8_t> buf, size_t off) {
  T v;
  std::memcpy(&v, buf.data() + off, sizeof(T));
  return v;
}

Status parse_iova_cap(std::span<const uint8_t> buf, size_t off, Type1Info& info) {
  size_t hdr = sizeof(vfio_iommu_type1_info_cap_iova_range);
  if (buf.size() - off < hdr) return fail(kOp, EPROTO, fmt::format("IOVA range cap at {} truncated", off));
  auto cap = load<vfio_iommu_type1_info_cap_iova_range>(buf, off);
  uint64_t bytes = uint64_t{cap.nr_iovas} * sizeof(vfio_iova_range);
  if (bytes > buf.size() - off - hdr) {
    return fail(kOp, EPROTO, fmt::format("IOVA range cap claims {} ranges past the buffer", cap.nr_iovas));
  }
  info.have_iova_ranges = true;
  for (uint32_t i = 0; i < cap.nr_iovas; ++i) {
    auto r = load<vfio_iova_range>(buf, off + hdr + i * sizeof(vfio_iova_range));
    if (r.end < r.start) return fail(kOp, EPROTO, fmt::format("IOVA range {} ends before it starts", i));
    info.iova_ranges.push_back(range_from_inclusive(r.start, r.end));
  }
  return {};
}

}  // namespace

uint64_t min_page_size(uint64_t page_sizes) { return page_sizes == 0 ? 0 : page_sizes & (~page_sizes + 1); }

Result<Type1Info> parse_type1_info(std::span<const uint8_t> buf) {
  constexpr size_t kMin = offsetof(vfio_iommu_type1_info, cap_offset) + sizeof(uint32_t);
  if (buf.size() < kMin) return fail(kOp, EPROTO, "info buffer shorter than the fixed header");
  vfio_iommu_type1_info head{};
  std::memcpy(&head, buf.data(), kMin);  // the fixed part; padding after cap_offset is not read
  Type1Info info;
  if (head.flags & VFIO_IOMMU_INFO_PGSIZES) info.page_sizes = head.iova_pgsizes;
  if (head.argsz > buf.size()) {
    info.needed_argsz = head.argsz;
    return info;
  }
  if (!(head.flags & VFIO_IOMMU_INFO_CAPS) || head.cap_offset == 0) return info;

  size_t off = head.cap_offset;
  size_t limit = head.argsz;  // the kernel filled this much
  auto chain = buf.first(limit);
  for (int n = 0; off != 0; ++n) {
    if (n == kMaxCaps) return fail(kOp, ELOOP, "capability chain too long");
    if (off < kMin || off > chain.size() || chain.size() - off < sizeof(vfio_info_cap_header)) {
      return fail(kOp, EPROTO, fmt::format("capability offset {} outside the {}-byte buffer", off, chain.size()));
    }
    if (off % alignof(uint32_t) != 0) return fail(kOp, EPROTO, fmt::format("capability offset {} misaligned", off));
    auto hdr = load<vfio_info_cap_header>(chain, off);
    switch (hdr.id) {
      case VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE:
        PINLESS_TRY_VOID(parse_iova_cap(chain, off, info));
        break;
      case VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL:
        if (chain.size() - off < sizeof(vfio_iommu_type1_info_dma_avail)) {
          return fail(kOp, EPROTO, "DMA avail cap truncated");
        }
        info.dma_avail = load<vfio_iommu_type1_info_dma_avail>(chain, off).avail;
        break;
      case VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION:
        info.migration_cap = true;
        break;
      default:
        break;  // unknown capabilities are skipped
    }
    // The kernel appends capabilities, so each next lies beyond the current one; anything
    // else is a loop or garbage.
    if (hdr.next != 0 && hdr.next <= off) {
      return fail(kOp, ELOOP, fmt::format("capability at {} points back to {}", off, hdr.next));
    }
    off = hdr.next;
  }
  return info;
}

}  // namespace pinless::iommu
