// ViommuModel: PROBE. Reports, per endpoint, the MSI doorbell window (RESV_MEM MSI) and the
// host's reserved IOVA ranges minus that window (RESV_MEM RESERVED, in address order, merged
// so that no two overlap). Properties are written whole into the first probe_size bytes of
// the device-writable part; what does not fit is left out (MSI first, so it is the last to
// go) and logged, and the request still succeeds. Every other byte before the tail is zero,
// which also ends the list.
#include <algorithm>
#include <tuple>

#include "pinless/virtio/iommu/model.h"

namespace pinless::virtio {

using namespace viommu;

uint32_t ViommuModel::do_probe(std::span<const uint8_t> req, Reply reply) {
  const uint32_t ep = le32(req, probe::kEndpoint);
  log_->debug("PROBE endpoint {:#x}", ep);
  auto eit = endpoints_.find(ep);
  if (eit == endpoints_.end()) return finish(reply, Code::kNoent);
  // The driver must provide probe_size bytes of properties; with fewer, write no property.
  const size_t area = reply.size() - kTailSize;
  if (area < cfg_.probe_size) {
    if (warn_.allow()) {
      log_->warn("virtio-iommu: PROBE with {} bytes for properties, probe_size is {}", area,
                 cfg_.probe_size);
    }
    return finish(reply, Code::kInval);
  }

  std::vector<std::tuple<uint8_t, uint64_t, uint64_t>> regions;
  regions.emplace_back(probe::kResvMsi, cfg_.msi_start, cfg_.msi_end);
  for (const auto& [lo, hi] : reserved_of(ep, eit->second)) {
    if (hi < cfg_.msi_start || lo > cfg_.msi_end) {
      regions.emplace_back(probe::kResvReserved, lo, hi);
      continue;
    }
    // Overlapping RESV_MEM properties are not allowed: report only what lies outside MSI.
    if (lo < cfg_.msi_start) regions.emplace_back(probe::kResvReserved, lo, cfg_.msi_start - 1);
    if (hi > cfg_.msi_end) regions.emplace_back(probe::kResvReserved, cfg_.msi_end + 1, hi);
  }

  std::fill(reply.begin(), reply.end() - kTailSize, uint8_t{0});
  auto props = reply.first(cfg_.probe_size);
  size_t off = 0;
  size_t written = 0;
  for (const auto& [subtype, lo, hi] : regions) {
    if (props.size() - off < probe::kResvMemSize) break;
    auto p = props.subspan(off, probe::kResvMemSize);
    put_le16(p, 0, probe::kPropResvMem);
    put_le16(p, 2, probe::kResvMemLength);
    p[probe::kResvSubtype] = subtype;
    put_le64(p, probe::kResvStart, lo);
    put_le64(p, probe::kResvEnd, hi);
    off += probe::kResvMemSize;
    ++written;
  }
  if (written < regions.size() && warn_.allow()) {
    log_->warn("virtio-iommu: PROBE of endpoint {:#x} reports {} of {} reserved regions: "
               "probe_size {} is too small", ep, written, regions.size(), cfg_.probe_size);
  }
  return write_tail(reply, Code::kOk);
}

}  // namespace pinless::virtio
