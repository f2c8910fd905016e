#include "pinless/vmm/acpi/viot.h"

#include <cerrno>
#include <string>

#include <fmt/format.h>

#include "pinless/vmm/acpi/sdt.h"

namespace pinless::vmm::acpi {
namespace {

constexpr uint8_t kViotRevision = 0;
constexpr uint8_t kNodePciRange = 1;
constexpr uint8_t kNodeVirtioIommuPci = 3;
// node_count is 16 bits and counts the IOMMU node too.
constexpr size_t kMaxRanges = 0xffff - 1;

std::string describe(size_t index, const ViotPciRange& r) {
  return fmt::format("range {} (segments {:#x}..{:#x}, bdf {:#06x}..{:#06x}, endpoint {:#x})",
                     index, r.segment_start, r.segment_end, r.bdf_start, r.bdf_end,
                     r.endpoint_start);
}

bool intersect(uint64_t a_first, uint64_t a_last, uint64_t b_first, uint64_t b_last) {
  return a_first <= b_last && b_first <= a_last;
}

}  // namespace

ViotConfig ViotConfig::for_buses(uint16_t iommu_bdf, uint8_t bus_start, uint8_t bus_end) {
  ViotConfig c;
  c.iommu_bdf = iommu_bdf;
  c.ranges.push_back({.bdf_start = pci_bdf(bus_start, 0, 0),
                      .bdf_end = pci_bdf(bus_end, 31, 7),
                      .endpoint_start = pci_bdf(bus_start, 0, 0)});
  return c;
}

Status validate(const ViotConfig& c) {
  if (c.ranges.empty()) {
    return fail("ACPI VIOT", EINVAL, "no PCI range: the virtio-iommu would translate nothing");
  }
  if (c.ranges.size() > kMaxRanges) {
    return fail("ACPI VIOT", EINVAL,
                fmt::format("{} PCI ranges, node_count allows {}", c.ranges.size(), kMaxRanges));
  }
  for (size_t i = 0; i < c.ranges.size(); ++i) {
    const ViotPciRange& r = c.ranges[i];
    if (r.segment_end < r.segment_start) {
      return fail("ACPI VIOT", EINVAL, describe(i, r) + ": segment_end < segment_start");
    }
    if (r.bdf_end < r.bdf_start) {
      return fail("ACPI VIOT", EINVAL, describe(i, r) + ": bdf_end < bdf_start");
    }
    if (r.last_endpoint_id() > 0xffffffffull) {
      return fail("ACPI VIOT", EINVAL, describe(i, r) + ": endpoint IDs overflow 32 bits");
    }
  }
  // Quadratic, but a VMM has a handful of ranges (node_count bounds the worst case).
  for (size_t i = 0; i < c.ranges.size(); ++i) {
    const ViotPciRange& a = c.ranges[i];
    for (size_t j = i + 1; j < c.ranges.size(); ++j) {
      const ViotPciRange& b = c.ranges[j];
      if (intersect(a.segment_start, a.segment_end, b.segment_start, b.segment_end) &&
          intersect(a.bdf_start, a.bdf_end, b.bdf_start, b.bdf_end)) {
        return fail("ACPI VIOT", EINVAL,
                    describe(i, a) + " and " + describe(j, b) + " cover the same functions");
      }
      if (intersect(a.endpoint_start, a.last_endpoint_id(), b.endpoint_start,
                    b.last_endpoint_id())) {
        return fail("ACPI VIOT", EINVAL,
                    describe(i, a) + " and " + describe(j, b) + " share endpoint IDs");
      }
    }
  }
  return {};
}

Result<std::vector<uint8_t>> build_viot(const ViotConfig& c) {
  PINLESS_TRY_VOID(validate(c));
  Sdt viot("VIOT", kViotRevision);
  viot.u16(uint16_t(1 + c.ranges.size()));  // node_count
  viot.u16(uint16_t(kViotHeaderSize));       // node_offset
  viot.zeros(8);
  // The IOMMU node comes first, so every range's output_node is the same fixed offset.
  const size_t iommu_node = viot.size();
  viot.u8(kNodeVirtioIommuPci).u8(0).u16(uint16_t(kViotIommuPciNodeSize));
  viot.u16(c.iommu_segment).u16(c.iommu_bdf).zeros(8);
  for (const ViotPciRange& r : c.ranges) {
    viot.u8(kNodePciRange).u8(0).u16(uint16_t(kViotPciRangeNodeSize));
    viot.u32(r.endpoint_start);
    viot.u16(r.segment_start).u16(r.segment_end).u16(r.bdf_start).u16(r.bdf_end);
    viot.u16(uint16_t(iommu_node)).zeros(6);
  }
  return std::move(viot).finish();
}

std::optional<uint32_t> viot_endpoint_id(const ViotConfig& c, uint16_t segment, uint16_t bdf) {
  // Linux never puts the virtio-iommu behind itself, whatever the ranges say.
  if (segment == c.iommu_segment && bdf == c.iommu_bdf) return std::nullopt;
  for (const ViotPciRange& r : c.ranges) {
    if (r.covers(segment, bdf)) return r.endpoint_id(segment, bdf);
  }
  return std::nullopt;
}

}  // namespace pinless::vmm::acpi
