#include "pinless/vmm/cli/dma_config.h"

#include <algorithm>
#include <charconv>

#include "pinless/base/result.h"
#include "pinless/base/size.h"
#include "pinless/base/types.h"
#include "option_text.h"

namespace pinless::vmm {
namespace {

using cli_text::key_value;
using cli_text::split;

// One mistake on the command line: "<what>: <problem>", `what` the option as the user wrote it.
Status bad(const std::string& what, const std::string& problem) { return cli_text::bad_option(what + ": " + problem); }

bool parse_u64(const std::string& s, uint64_t* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

bool DmaConfig::any_fault() const {
  return std::any_of(regions.begin(), regions.end(), [](const auto& r) { return r.fault; });
}

Status parse_ram_region_option(const std::string& value, DmaConfig* out) {
  const std::string what = "--ram-region " + value;
  auto items = split(value, ',');
  if (items.empty() || items[0].empty()) {
    return bad(what, "give OFFSET:SIZE,dma=pin|fault (e.g. 1G:3G,dma=fault,premap=512)");
  }
  RamRegionConfig r;
  auto colon = items[0].find(':');
  if (colon == std::string::npos) {
    return bad(what, "'" + items[0] + "' is not OFFSET:SIZE; write for example 0:1G");
  }
  auto off = parse_size(items[0].substr(0, colon));
  auto size = parse_size(items[0].substr(colon + 1));
  if (!off || !size) return bad(what, "'" + items[0] + "' does not parse; write sizes like 0:1G or 512M:256M");
  r.offset = *off;
  r.size = *size;
  bool have_dma = false, have_premap = false, have_window = false;
  for (size_t i = 1; i < items.size(); ++i) {
    auto [key, val] = key_value(items[i]);
    if (key == "dma") {
      if (val != "pin" && val != "fault") return bad(what, "dma=" + val + " is not pin or fault");
      r.fault = val == "fault";
      have_dma = true;
    } else if (key == "premap") {
      uint64_t& premap = r.fault_policy.premap_pages;
      if (!parse_u64(val, &premap) || premap == 0 || premap > iommu::kMaxPremapPages) {
        return bad(what, "premap=" + val + " is not a page count from 1 to " + std::to_string(iommu::kMaxPremapPages) +
               " (4 KiB pages mapped per fault)");
      }
      have_premap = true;
    } else if (key == "window") {
      auto w = iommu::parse_window_policy(val);
      if (!w) return bad(what, "window=" + val + " is not forward, aligned or hint");
      r.fault_policy.window = *w;
      have_window = true;
    } else {
      return bad(what, "unknown key '" + key + "'; the keys are dma, premap and window");
    }
  }
  if (!have_dma) return bad(what, "say dma=pin or dma=fault");
  if (!r.fault && (have_premap || have_window)) {
    return bad(what, "premap= and window= apply to dma=fault regions only; drop them or write dma=fault");
  }
  out->regions.push_back(r);
  return {};
}

Status check_ram_regions(uint64_t memory_size, DmaConfig* dma) {
  auto& rs = dma->regions;
  std::sort(rs.begin(), rs.end(), [](const auto& a, const auto& b) { return a.offset < b.offset; });
  for (size_t i = 0; i < rs.size(); ++i) {
    const auto& r = rs[i];
    std::string name = "--ram-region " + format_size(r.offset) + ":" + format_size(r.size);
    if (r.size == 0) return bad(name, "the region is empty; give it a size");
    if (r.offset % kPageSize || r.size % kPageSize) return bad(name, "offset and size must be multiples of 4K");
    if (r.offset >= memory_size || r.size > memory_size - r.offset) {
      return bad(name, "ends beyond the guest's " + format_size(memory_size) + " of RAM; shrink it or raise --memory");
    }
    if (i > 0 && rs[i - 1].end() > r.offset) {
      return bad(name, "overlaps the region at " + format_size(rs[i - 1].offset) + "; regions must be disjoint");
    }
  }
  return {};
}

Status parse_pin_limit_option(const std::string& value, DmaConfig* out) {
  auto items = split(value, ',');
  const std::string what = "--pin-limit " + value;
  auto limit = parse_size(items.empty() ? std::string() : items[0]);
  if (!limit || *limit == 0) {
    return bad(what, "give a size like 1G (the most guest RAM this VM may pin)");
  }
  out->pin_limit = *limit;
  for (size_t i = 1; i < items.size(); ++i) {
    auto [key, val] = key_value(items[i]);
    if (key != "reclaim" || (val != "on" && val != "off")) {
      return bad(what, "'" + items[i] + "' is not reclaim=on or reclaim=off");
    }
    out->reclaim = val == "on";
  }
  return {};
}

Status parse_mock_device_option(const std::string& value, DmaConfig* out) {
  const std::string what = "--device " + value;
  auto items = split(value, ',');
  if (items.empty() || items[0] != "mock") return bad(what, "not a mock device; write mock,idev=I,stdev=S,home=H");
  MockDeviceConfig m;
  bool idev = false, stdev = false, home = false;
  for (size_t i = 1; i < items.size(); ++i) {
    auto [key, val] = key_value(items[i]);
    uint64_t v = 0;
    if (!parse_u64(val, &v) || v == 0 || v > UINT32_MAX) {
      return bad(what, "'" + items[i] + "' needs a nonzero iommufd object id");
    }
    if (key == "idev") {
      m.idev = uint32_t(v), idev = true;
    } else if (key == "stdev") {
      m.stdev = uint32_t(v), stdev = true;
    } else if (key == "home") {
      m.home = uint32_t(v), home = true;
    } else {
      return bad(what, "unknown key '" + key + "'; the keys are idev, stdev and home");
    }
  }
  if (!idev || !stdev || !home) {
    return bad(what, "a mock device needs idev=, stdev= and home= (ids from IOMMU_TEST_OP_MOCK_DOMAIN)");
  }
  out->mocks.push_back(m);
  return {};
}

}  // namespace pinless::vmm
