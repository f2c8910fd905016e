#include <doctest/doctest.h>

#include <array>
#include <cerrno>
#include <string>
#include <vector>

#include "viommu_rig.h"

using namespace pinless;
using namespace pinless::virtio;
using namespace pinless::virtio::testing;
using Calls = std::vector<std::string>;
using Bytes = std::vector<uint8_t>;

namespace {
Bytes read(const ViommuModel& m, uint64_t off, size_t n) {
  Bytes b(n, 0xcc);
  m.config_read(off, b);
  return b;
}
void write8(ViommuModel& m, uint64_t off, uint8_t v) {
  const uint8_t b[1] = {v};
  m.config_write(off, b);
}
}  // namespace

TEST_CASE("viommu config: the 40 bytes read back exactly, out of bounds reads as zero") {
  ViommuConfig c = test_config();
  c.input_start = 0x1000;
  Rig r(c);
  const Bytes want{0x00, 0x10, 0x20, 0x40, 0, 0, 0, 0,           // page_size_mask 0x40201000
                   0x00, 0x10, 0, 0, 0, 0, 0, 0,                 // input_range.start
                   0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,     // input_range.end 2^48 - 1
                   0x01, 0, 0, 0, 0xff, 0xff, 0, 0,              // domain_range [1, 65535]
                   0x00, 0x02, 0, 0,                             // probe_size 512
                   0x01, 0, 0, 0};                               // bypass 1, reserved
  CHECK(read(*r.model, 0, 40) == want);
  for (uint64_t off = 0; off < 40; ++off) {
    CAPTURE(off);
    CHECK(read(*r.model, off, 1) == Bytes{want[off]});
  }
  CHECK(read(*r.model, 36, 8) == Bytes{1, 0, 0, 0, 0, 0, 0, 0});
  CHECK(read(*r.model, 40, 4) == Bytes(4, 0));
  CHECK(read(*r.model, 0x1000, 8) == Bytes(8, 0));
  CHECK(read(*r.model, ~0ull, 8) == Bytes(8, 0));
  CHECK(read(*r.model, ~0ull - 3, 8) == Bytes(8, 0));  // offset + size wraps
  CHECK(read(*r.model, 0, 0).empty());
  CHECK(read(*r.model, 0, 64) == [&] { Bytes b = want; b.resize(64, 0); return b; }());
}

TEST_CASE("viommu config: bypass is the only writable field, with BYPASS_CONFIG negotiated") {
  Rig r;
  CHECK(r.attach(1, 0x8) == OK);
  r.take_calls();
  write8(*r.model, 36, 0);
  CHECK(read(*r.model, 36, 1) == Bytes{0});
  CHECK(r.take_calls() == Calls{"block 0x10", "block 0x18"});  // 0x8 is attached: untouched
  write8(*r.model, 36, 0);
  CHECK(r.take_calls().empty());
  CHECK(r.detach(1, 0x8) == OK);
  CHECK(r.take_calls() == Calls{"block 0x8", "destroy 1"});
  write8(*r.model, 36, 0xff);  // bits 1-7 are dropped
  CHECK(read(*r.model, 36, 1) == Bytes{1});
  CHECK(r.take_calls() == Calls{"bypass 0x8", "bypass 0x10", "bypass 0x18"});
  write8(*r.model, 36, 2);
  CHECK(read(*r.model, 36, 1) == Bytes{0});
  r.take_calls();

  const Bytes before = read(*r.model, 0, 40);
  const std::array<uint8_t, 8> ones{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  for (uint64_t off : {0ull, 8ull, 16ull, 24ull, 32ull, 37ull, 40ull, 0x1000ull, ~0ull,
                       ~0ull - 4}) {
    r.model->config_write(off, std::span(ones).first(off == 32 ? 4 : 8));
  }
  r.model->config_write(36, std::span<const uint8_t>{});
  CHECK(read(*r.model, 0, 40) == before);
  CHECK(r.take_calls().empty());
  // A wider write that covers bypass sets it from its byte at offset 36.
  r.model->config_write(32, ones);
  CHECK(read(*r.model, 36, 1) == Bytes{1});
  CHECK(read(*r.model, 32, 4) == Bytes{0x00, 0x02, 0, 0});
  CHECK(inconsistency(*r.model, r.host, r.cfg) == "");

  Rig nb(test_config(), kAllFeatures & ~w::kFBypassConfig);  // offered, not negotiated
  write8(*nb.model, 36, 0);
  CHECK(read(*nb.model, 36, 1) == Bytes{1});
  CHECK(nb.take_calls().empty());
}

TEST_CASE("viommu config: without BYPASS_CONFIG offered, unattached endpoints are blocked") {
  ViommuConfig c = test_config();
  c.features &= ~w::kFBypassConfig;
  Rig r(c, c.features);
  CHECK(r.take_calls() == Calls{"block 0x8", "block 0x10", "block 0x18"});
  CHECK(r.attach(1, 0x8) == OK);
  CHECK(r.detach(1, 0x8) == OK);
  CHECK(r.take_calls() == Calls{"attach 0x8 1", "block 0x8", "destroy 1"});
  CHECK(inconsistency(*r.model, r.host, r.cfg) == "");
}

TEST_CASE("viommu features: offered set, negotiation keeps only offered bits") {
  Rig r(test_config(), 0);
  CHECK(r.model->device_features() == 0x100000057ull);
  CHECK(r.model->features() == 0);
  r.model->set_features(~0ull);
  CHECK(r.model->features() == 0x100000057ull);
  r.model->set_features(w::kFVersion1 | w::kFMapUnmap | w::kFMmio);
  CHECK(r.model->features() == (w::kFVersion1 | w::kFMapUnmap));
}

TEST_CASE("viommu create: configurations the driver or the spec rejects") {
  FakeViommuHost host;
  auto einval = [&](ViommuConfig c) {
    auto m = ViommuModel::create(host, c);
    return !m && m.error().err() == EINVAL;
  };
  ViommuConfig c = test_config();
  c.page_size_mask = 0;
  CHECK(einval(c));
  c = test_config();
  c.input_start = 0x2000;
  c.input_end = 0x1fff;
  CHECK(einval(c));
  c = test_config();
  c.domain_start = 2;
  c.domain_end = 1;
  CHECK(einval(c));
  c = test_config();
  c.features &= ~w::kFVersion1;
  CHECK(einval(c));
  c = test_config();
  c.features &= ~w::kFMapUnmap;
  CHECK(einval(c));
  c = test_config();
  c.features |= w::kFBypass;
  CHECK(einval(c));
  c = test_config();
  c.msi_start = 1;
  c.msi_end = 0;
  CHECK(einval(c));
  c = test_config();
  c.max_mappings_per_domain = 0;
  CHECK(einval(c));
  CHECK(host.calls.empty());

  c = test_config();
  c.bypass = false;
  host.fail_next["block"] = EPERM;
  auto m = ViommuModel::create(host, c);
  REQUIRE_FALSE(m);
  CHECK(m.error().err() == EPERM);

  c = test_config();
  c.endpoints = {0x18, 0x8, 0x18};  // duplicates collapse
  auto ok = ViommuModel::create(host, c);
  REQUIRE(ok);
  CHECK((*ok)->state().endpoints.size() == 2);
}

TEST_CASE("viommu reset: detaches everything, destroys host domains, keeps bypass") {
  Rig r;
  write8(*r.model, 36, 0);
  CHECK(r.attach(1, 0x8) == OK);
  CHECK(r.attach(1, 0x10) == OK);
  CHECK(r.attach(5, 0x18, w::attach::kFlagBypass) == OK);
  CHECK(r.map(1, 0x1000, 0x1fff, 0xa000) == OK);
  r.take_calls();
  r.model->reset();
  CHECK(r.take_calls() == Calls{"block 0x8", "block 0x10", "block 0x18", "destroy 1"});
  auto s = r.model->state();
  CHECK(s.domains.empty());
  CHECK(s.features == 0);
  CHECK(s.bypass == 0);  // a device reset keeps it
  CHECK(r.model->stats().domains == 0);
  CHECK(r.model->stats().mappings == 0);
  CHECK(inconsistency(*r.model, r.host, r.cfg) == "");
  // Features are gone until the driver negotiates again.
  std::array<uint8_t, 4> tail{};
  CHECK(r.model->handle(map_req(1, 0x1000, 0x1fff, 0xa000), tail) == 0);
  CHECK(r.model->handle(probe_req(0x8), std::span(tail)) == 0);
  r.model->set_features(kAllFeatures);
  CHECK(r.attach(1, 0x8) == OK);
  CHECK(r.mappings(1).empty());

  // With bypass 1 the endpoints return to identity; if the host refuses, they are blocked.
  Rig b;
  CHECK(b.attach(1, 0x8) == OK);
  CHECK(b.attach(2, 0x10) == OK);
  b.take_calls();
  b.host.fail_next["bypass"] = EIO;
  b.model->reset();
  CHECK(b.take_calls() ==
        Calls{"bypass 0x8", "block 0x8", "bypass 0x10", "destroy 1", "destroy 2"});
  CHECK(b.host.violations.empty());
  CHECK(b.model->state().endpoints.at(0x8).host == ViommuModel::HostPath::kBlocked);
}
