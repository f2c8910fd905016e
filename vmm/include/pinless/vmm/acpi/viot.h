// The ACPI VIOT (Virtual I/O Translation table): tells the guest which PCI function is the
// virtio-iommu and which PCI functions it translates, and under which endpoint IDs. Linux
// reads it at boot; without it the virtio-iommu driver binds but no device is placed behind it.
//
// Layout (revision 0, as every VMM that emits a VIOT uses), and what Linux does with each field:
//   header     36-byte SDT header ("VIOT"); length and checksum are checked like any table's.
//   +36 u16    node_count: the number of nodes Linux walks.
//   +38 u16    node_offset: where the first node starts (48 here); each node's own length
//              field takes the walk to the next one.
//   +40        8 reserved bytes, zero.
//   node 3     virtio-iommu-pci (16 bytes): segment and BDF of the virtio-iommu function.
//              Linux matches the PCI device at that address to the driver it probes, and
//              never places that function behind itself ("we're not translating ourself"),
//              even when a range below covers its BDF.
//   node 1     PCI range (24 bytes), one per ViotPciRange: every function whose segment is in
//              segment_start..segment_end and whose BDF is in bdf_start..bdf_end is an
//              endpoint of the IOMMU node at output_node (that node's byte offset from the
//              start of the table). Its endpoint ID, the number the guest driver puts in the
//              endpoint field of its ATTACH/DETACH/PROBE requests, is
//                ((segment - segment_start) << 16) + bdf - bdf_start + endpoint_start.
// The presence of a VIOT also makes Linux request ACS on PCIe ports (pci_request_acs()), so
// peer-to-peer DMA goes up through the IOMMU and PCIe functions can get IOMMU groups of their own.
//
// Pure functions over value types; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "pinless/base/result.h"

namespace pinless::vmm::acpi {

// Bus/device/function as one 16-bit routing id: bus << 8 | device << 3 | function.
constexpr uint16_t pci_bdf(uint8_t bus, uint8_t device, uint8_t function) {
  return uint16_t(bus << 8 | (device & 0x1f) << 3 | (function & 0x7));
}

// One PCI range node: the functions it covers and the first endpoint ID it hands out.
struct ViotPciRange {
  uint16_t segment_start = 0;
  uint16_t segment_end = 0;
  uint16_t bdf_start = 0;
  uint16_t bdf_end = 0;
  uint32_t endpoint_start = 0;

  bool covers(uint16_t segment, uint16_t bdf) const {
    return segment >= segment_start && segment <= segment_end && bdf >= bdf_start &&
           bdf <= bdf_end;
  }
  // Linux's rule; meaningful only when covers(segment, bdf).
  uint32_t endpoint_id(uint16_t segment, uint16_t bdf) const {
    return (uint32_t(segment - segment_start) << 16) + uint32_t(bdf - bdf_start) + endpoint_start;
  }
  // The largest endpoint ID of the range (64 bits: validate() rejects one above 32).
  uint64_t last_endpoint_id() const {
    return (uint64_t(segment_end - segment_start) << 16) + uint64_t(bdf_end - bdf_start) +
           endpoint_start;
  }
};

// The topology of one virtio-iommu-pci device.
struct ViotConfig {
  uint16_t iommu_segment = 0;
  uint16_t iommu_bdf = 0;
  std::vector<ViotPciRange> ranges;  // one PCI range node each, in this order

  // Every function on buses bus_start..bus_end of segment 0, endpoint ID = BDF.
  static ViotConfig for_buses(uint16_t iommu_bdf, uint8_t bus_start, uint8_t bus_end);
};

constexpr size_t kViotHeaderSize = 48;  // SDT header, node_count, node_offset, reserved
constexpr size_t kViotIommuPciNodeSize = 16;
constexpr size_t kViotPciRangeNodeSize = 24;

// EINVAL (op "ACPI VIOT", context naming the range) for: no ranges; more ranges than
// node_count can count; segment_end < segment_start or bdf_end < bdf_start; two ranges
// that cover a common function; a range whose endpoint IDs go past 0xffffffff; two ranges
// whose endpoint ID spans (first..last ID) intersect, since two functions with one ID would
// share a domain and the device model could not tell them apart.
Status validate(const ViotConfig& config);

// The whole table with a valid checksum, or validate()'s error.
Result<std::vector<uint8_t>> build_viot(const ViotConfig& config);

// The endpoint ID the guest will use for the function at segment/bdf, or nullopt when no
// range covers it or it is the virtio-iommu itself. Expects a config that passed validate()
// (otherwise the first covering range wins).
std::optional<uint32_t> viot_endpoint_id(const ViotConfig& config, uint16_t segment,
                                         uint16_t bdf);

}  // namespace pinless::vmm::acpi
