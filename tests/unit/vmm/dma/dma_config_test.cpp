#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "pinless/vmm/cli/config.h"
#include "pinless/vmm/cli/dma_config.h"

using namespace pinless;
using namespace pinless::vmm;
using iommu::WindowPolicy;

namespace {
// The line the CLI prints for a failed parse ("" when it succeeded).
std::string text(const Status& st) { return st ? std::string() : st.error().message(); }
std::string region_error(const std::string& v) {
  DmaConfig c;
  return text(parse_ram_region_option(v, &c));
}
bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

struct KernelFile {
  std::string path;
  KernelFile() {
    char tmpl[] = "/tmp/pinless-dma-cli-XXXXXX";
    int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, "x", 1) == 1);
    ::close(fd);
    path = tmpl;
  }
  ~KernelFile() { ::unlink(path.c_str()); }
};
}  // namespace

TEST_CASE("ram-region: offsets, policy, premap and window parse; defaults are aligned 512") {
  DmaConfig c;
  REQUIRE(parse_ram_region_option("1G:3G,dma=fault,premap=16,window=forward", &c));
  REQUIRE(parse_ram_region_option("0:1G,dma=pin", &c));
  REQUIRE(parse_ram_region_option("4G:512M,dma=fault", &c));
  REQUIRE(c.regions.size() == 3);
  CHECK(c.regions[0].offset == kGiB);
  CHECK(c.regions[0].size == 3 * kGiB);
  CHECK(c.regions[0].fault);
  CHECK(c.regions[0].fault_policy.premap_pages == 16);
  CHECK(c.regions[0].fault_policy.window == WindowPolicy::kForward);
  CHECK_FALSE(c.regions[1].fault);
  CHECK(c.regions[2].fault_policy.premap_pages == 512);  // the CLI's defaults: 512 pages, aligned
  CHECK(c.regions[2].fault_policy.window == WindowPolicy::kAligned);
  CHECK(c.any_fault());
  REQUIRE(check_ram_regions(5 * kGiB, &c));
  CHECK(c.regions[0].offset == 0);  // sorted
  CHECK(c.regions[2].offset == 4 * kGiB);
}

TEST_CASE("ram-region: each mistake gets its own message") {
  CHECK(has(region_error(""), "OFFSET:SIZE"));
  CHECK(has(region_error("1G,dma=pin"), "not OFFSET:SIZE"));
  CHECK(has(region_error("x:1G,dma=pin"), "does not parse"));
  CHECK(has(region_error("0:1G"), "dma=pin or dma=fault"));
  CHECK(has(region_error("0:1G,dma=maybe"), "not pin or fault"));
  CHECK(has(region_error("0:1G,dma=fault,premap=0"), "page count"));
  CHECK(has(region_error("0:1G,dma=fault,premap=abc"), "page count"));
  CHECK(has(region_error("0:1G,dma=fault,premap=999999999"), "page count"));
  CHECK(has(region_error("0:1G,dma=fault,window=backward"), "forward, aligned or hint"));
  CHECK(has(region_error("0:1G,dma=pin,premap=4"), "dma=fault regions only"));
  CHECK(has(region_error("0:1G,dma=fault,color=red"), "unknown key 'color'"));
  // The whole line, as the CLI prints it after "pinless: ".
  CHECK(region_error("0:1G,dma=maybe") == "--ram-region 0:1G,dma=maybe: dma=maybe is not pin or fault");
}

TEST_CASE("ram-region: regions must fit in RAM, be 4K aligned and disjoint") {
  auto check = [](std::vector<std::string> specs, uint64_t mem) {
    DmaConfig c;
    for (const auto& s : specs) REQUIRE(parse_ram_region_option(s, &c));
    return text(check_ram_regions(mem, &c));
  };
  CHECK(check({"0:1G,dma=pin", "1G:1G,dma=fault"}, 2 * kGiB).empty());
  CHECK(has(check({"1G:2G,dma=fault"}, 2 * kGiB), "beyond"));
  CHECK(has(check({"3G:1M,dma=fault"}, 2 * kGiB), "beyond"));
  CHECK(has(check({"0:1G,dma=pin", "512M:1G,dma=fault"}, 2 * kGiB), "overlaps"));
  CHECK(has(check({"100:4096,dma=fault"}, 2 * kGiB), "multiples of 4K"));
  CHECK(has(check({"0:0,dma=fault"}, 2 * kGiB), "empty"));
}

TEST_CASE("pin-limit and mock device options") {
  DmaConfig c;
  REQUIRE(parse_pin_limit_option("1G", &c));
  CHECK(c.pin_limit == kGiB);
  CHECK_FALSE(c.reclaim);
  REQUIRE(parse_pin_limit_option("256M,reclaim=on", &c));
  CHECK(c.pin_limit == 256 * kMiB);
  CHECK(c.reclaim);
  CHECK(text(parse_pin_limit_option("0", &c)) ==
        "--pin-limit 0: give a size like 1G (the most guest RAM this VM may pin)");
  CHECK(has(text(parse_pin_limit_option("lots", &c)), "give a size"));
  CHECK(has(text(parse_pin_limit_option("1G,reclaim=maybe", &c)), "reclaim=on"));

  REQUIRE(parse_mock_device_option("mock,idev=3,stdev=2,home=1", &c));
  REQUIRE(c.mocks.size() == 1);
  CHECK(c.mocks[0].idev == 3);
  CHECK(c.mocks[0].stdev == 2);
  CHECK(c.mocks[0].home == 1);
  CHECK(has(text(parse_mock_device_option("mock,idev=3,stdev=2", &c)), "needs idev=, stdev= and home="));
  CHECK(has(text(parse_mock_device_option("mock,idev=0,stdev=2,home=1", &c)), "nonzero"));
  CHECK(has(text(parse_mock_device_option("mock,idev=3,stdev=2,home=1,x=4", &c)), "unknown key"));
}

TEST_CASE("cli: --ram-region, --dma-fallback, --pin-limit and --device mock reach the config") {
  KernelFile k;
  const HostLimits host{16 * kGiB};
  auto r = parse_cli({"run", "--kernel", k.path, "--memory", "size=4G", "--ram-region", "1G:3G,dma=fault,premap=64",
                      "--ram-region", "0:1G,dma=pin", "--dma-fallback", "pin", "--pin-limit", "2G,reclaim=on"},
                     host);
  REQUIRE(r.action == CliResult::Action::kRun);
  REQUIRE(r.config.dma.regions.size() == 2);
  CHECK(r.config.dma.regions[0].offset == 0);
  CHECK(r.config.dma.regions[1].fault_policy.premap_pages == 64);
  CHECK(r.config.dma.fallback_pin);
  CHECK(r.config.dma.pin_limit == 2 * kGiB);
  CHECK(r.config.dma.reclaim);
  CHECK_FALSE(r.config.has_dma_devices());

  auto d = parse_cli({"run", "--kernel", k.path, "--iommufd-fd", "5", "--device", "mock,idev=3,stdev=2,home=1"}, host);
  REQUIRE(d.action == CliResult::Action::kRun);
  CHECK(d.config.has_dma_devices());
  CHECK_FALSE(d.config.dma.fallback_pin);  // fail is the default

  auto e = parse_cli({"run", "--kernel", k.path, "--device", "mock,idev=3,stdev=2,home=1"}, host);
  REQUIRE(e.action == CliResult::Action::kError);
  CHECK(has(e.text, "--iommufd-fd"));
  auto m = parse_cli({"run", "--kernel", k.path, "--iommufd-fd", "5", "--device", "mock,idev=3"}, host);
  REQUIRE(m.action == CliResult::Action::kError);
  CHECK(m.text == "--device mock,idev=3: a mock device needs idev=, stdev= and home= (ids from IOMMU_TEST_OP_MOCK_DOMAIN)");
  auto big = parse_cli({"run", "--kernel", k.path, "--memory", "1G", "--ram-region", "512M:1G,dma=fault"}, host);
  REQUIRE(big.action == CliResult::Action::kError);
  CHECK(big.text == "--ram-region 512M:1G: ends beyond the guest's 1G of RAM; shrink it or raise --memory");
  auto fb = parse_cli({"run", "--kernel", k.path, "--dma-fallback", "maybe"}, host);
  CHECK(fb.action == CliResult::Action::kError);
}

// Found by tests/fuzz/cli_fuzz.cpp (corpus/cli/mock-device-without-mock).
TEST_CASE("mock device option: the leading word must be mock") {
  DmaConfig c;
  CHECK(has(text(parse_mock_device_option(",idev=1,stdev=2,home=6", &c)), "not a mock device"));
  CHECK(has(text(parse_mock_device_option("vfio,idev=1,stdev=2,home=6", &c)), "not a mock device"));
  CHECK(has(text(parse_mock_device_option("", &c)), "not a mock device"));
  CHECK(c.mocks.empty());
  CHECK(parse_mock_device_option("mock,idev=1,stdev=2,home=6", &c));
}
