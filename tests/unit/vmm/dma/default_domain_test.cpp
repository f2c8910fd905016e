#include <doctest/doctest.h>

#include <vector>

#include "../../../../vmm/src/dma/default_domain.h"  // private to vmm/src
#include "../../../../vmm/src/dma/page_request.h"

using namespace pinless;
using namespace pinless::vmm;

namespace {
// Two RAM regions as GuestMemory makes them for 4 GiB: 3 GiB below the hole, 1 GiB at 4 GiB.
std::vector<MemoryRegion> ram_4g() {
  auto* base = reinterpret_cast<uint8_t*>(uintptr_t(0x7f0000000000));
  return {{{Gpa(0), 3 * kGiB}, base, 0}, {{Gpa(4 * kGiB), kGiB}, base + 3 * kGiB, 3 * kGiB}};
}
}  // namespace

TEST_CASE("default domain: RAM not named is one pin region per RAM region, IOVA = GPA") {
  auto p = dma_domain_policy(ram_4g(), DmaConfig{});
  REQUIRE(p.regions.size() == 2);
  const auto& r = p.regions;
  CHECK_FALSE(r[0].fault);
  CHECK(r[0].iova.size == 3 * kGiB);
  CHECK(r[1].gpa == Gpa(4 * kGiB));
  CHECK(r[1].iova.start == Iova(4 * kGiB));
  CHECK(r[1].name == "ram");
  CHECK(r[1].offset == 3 * kGiB);
  CHECK(r[1].hva == r[0].hva + 3 * kGiB);
  CHECK_FALSE(p.fallback_pin);
  CHECK(p.pin_limit == 0);
  CHECK_FALSE(p.reclaim);
}

TEST_CASE("default domain: a region across the PCI hole is split, offsets count RAM bytes") {
  DmaConfig c;
  REQUIRE(parse_ram_region_option("0:1G,dma=pin", &c));
  REQUIRE(parse_ram_region_option("2G:2G,dma=fault,premap=16,window=forward", &c));
  REQUIRE(check_ram_regions(4 * kGiB, &c));
  REQUIRE(parse_pin_limit_option("3G,reclaim=on", &c));
  c.fallback_pin = true;
  auto policy = dma_domain_policy(ram_4g(), c);
  const auto& p = policy.regions;
  REQUIRE(p.size() == 4);
  CHECK((!p[0].fault && p[0].gpa == Gpa(0) && p[0].iova.size == kGiB));
  CHECK((!p[1].fault && p[1].gpa == Gpa(kGiB) && p[1].iova.size == kGiB));  // unnamed: pin
  CHECK((p[2].fault && p[2].gpa == Gpa(2 * kGiB) && p[2].iova.size == kGiB));
  CHECK(p[2].fault_policy.premap_pages == 16);
  CHECK(p[2].fault_policy.window == iommu::WindowPolicy::kForward);
  CHECK((p[3].fault && p[3].gpa == Gpa(4 * kGiB) && p[3].iova.size == kGiB));
  CHECK(p[3].offset == 3 * kGiB);
  CHECK(p[3].hva == p[0].hva + 3 * kGiB);
  uint64_t total = 0;
  for (const auto& x : p) {
    CHECK(x.iova.start.value() == x.gpa.value());
    total += x.iova.size;
  }
  CHECK(total == 4 * kGiB);
  CHECK(policy.fallback_pin);
  CHECK(policy.pin_limit == 3 * kGiB);
  CHECK(policy.reclaim);
}

TEST_CASE("page requests: PRI and ATS are found in the extended list; loops and junk end the walk") {
  std::vector<uint32_t> cfg(1024, 0);
  auto read = [&cfg](uint16_t off) { return cfg[off / 4]; };
  auto hdr = [](uint16_t id, uint16_t next) { return uint32_t(id) | (1u << 16) | (uint32_t(next) << 20); };
  CHECK_FALSE(page_request_support(read).can_fault);  // no extended capabilities at all
  cfg[0x100 / 4] = hdr(0x0001, 0x140);                 // AER
  cfg[0x140 / 4] = hdr(pci::kExtCapAts, 0x180);
  cfg[0x180 / 4] = hdr(pci::kExtCapPri, 0);
  CHECK(page_request_support(read).can_fault);
  cfg[0x140 / 4] = hdr(0x0003, 0x180);  // ATS gone: PRI alone is not enough
  auto s = page_request_support(read);
  CHECK_FALSE(s.can_fault);
  CHECK(s.why_not.find("ATS") != std::string::npos);
  cfg[0x180 / 4] = hdr(0x0004, 0x100);  // points backwards: a loop
  CHECK_FALSE(pci::find_ext_capability(read, pci::kExtCapPri));
  auto ones = [](uint16_t) { return 0xffffffffu; };  // unreadable
  CHECK(page_request_support(ones).why_not.find("PRI") != std::string::npos);
}
