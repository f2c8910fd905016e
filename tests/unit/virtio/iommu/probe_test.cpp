#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "viommu_rig.h"

using namespace pinless;
using namespace pinless::virtio;
using namespace pinless::virtio::testing;
using Bytes = std::vector<uint8_t>;

namespace {

// One RESV_MEM property, spelled out byte by byte (independent of the model's helpers).
void put_prop(Bytes& b, size_t off, uint8_t subtype, uint64_t start, uint64_t end) {
  const uint8_t head[8] = {0x01, 0x00, 0x14, 0x00, subtype, 0, 0, 0};
  for (size_t i = 0; i < 8; ++i) b[off + i] = head[i];
  for (size_t i = 0; i < 8; ++i) b[off + 8 + i] = uint8_t(start >> (8 * i));
  for (size_t i = 0; i < 8; ++i) b[off + 16 + i] = uint8_t(end >> (8 * i));
}

struct Probe {
  uint32_t used;
  Bytes reply;
};
Probe probe(Rig& r, uint32_t ep, size_t reply_size, size_t readable = w::probe::kReadable) {
  Bytes req = probe_req(ep);
  req.resize(readable, 0);
  Bytes reply(reply_size, 0xcc);
  const uint32_t used = r.model->handle(req, reply);
  return {used, reply};
}

}  // namespace

TEST_CASE("viommu probe: the MSI window, byte for byte") {
  Rig r;
  auto p = probe(r, 0x8, 512 + 4);
  CHECK(p.used == 516);
  Bytes want(516, 0);
  want[0] = 0x01;   // type RESV_MEM
  want[2] = 0x14;   // length 20
  want[4] = 0x01;   // subtype MSI
  want[10] = 0xe0;  // start 0xfee00000
  want[11] = 0xfe;
  want[16] = 0xff;  // end 0xfeefffff
  want[17] = 0xff;
  want[18] = 0xef;
  want[19] = 0xfe;
  CHECK(p.reply == want);  // the tail at 512 is OK (0) with zero reserved bytes
  CHECK(r.host.calls.empty());
}

TEST_CASE("viommu probe: host holes as RESERVED, sorted, merged, with the MSI window cut out") {
  Rig r;
  r.host.reserved_ranges[0x10] = {
      {Iova(0x1000000000000), 0 - 0x1000000000000ull},  // up to 2^64
      {Iova(0xfee00000), 0x100000},                    // exactly the MSI window
      {Iova(0x8080000), 0x100000},                     // overlaps the next one
      {Iova(0x8000000), 0x100000},
      {Iova(0xfed00000), 0x200000},                    // straddles the MSI start
      {Iova(0xfee80000), 0x100000},                    // straddles the MSI end
      {Iova(0x1000), 0},                               // empty: ignored
  };
  auto p = probe(r, 0x10, 516);
  CHECK(p.used == 516);
  Bytes want(516, 0);
  put_prop(want, 0, 1, 0xfee00000, 0xfeefffff);
  put_prop(want, 24, 0, 0x8000000, 0x817ffff);
  put_prop(want, 48, 0, 0xfed00000, 0xfedfffff);
  put_prop(want, 72, 0, 0xfef00000, 0xfef7ffff);
  put_prop(want, 96, 0, 0x1000000000000, 0xffffffffffffffff);
  CHECK(p.reply == want);

  // Asked once per endpoint and cached until reset.
  CHECK(r.host.reserved_queries == 1);
  CHECK(probe(r, 0x10, 516).reply == want);
  CHECK(r.host.reserved_queries == 1);
  r.model->reset();
  r.model->set_features(kAllFeatures);
  CHECK(probe(r, 0x10, 516).reply == want);
  CHECK(r.host.reserved_queries == 2);
}

TEST_CASE("viommu probe: only with F_PROBE, NOENT, INVAL when properties cannot fit") {
  Rig off(test_config(), kAllFeatures & ~w::kFProbe);
  auto p = probe(off, 0x8, 516);
  CHECK(p.used == 0);
  CHECK(p.reply == Bytes(516, 0xcc));

  Rig r;
  p = probe(r, 0x9, 516);
  CHECK(p.used == 516);
  Bytes want(516, 0);
  want[512] = NOENT;
  CHECK(p.reply == want);

  // Fewer than probe_size bytes for properties: no property at all.
  p = probe(r, 0x8, 515);
  CHECK(p.used == 515);
  want.assign(515, 0);
  want[511] = INVAL;
  CHECK(p.reply == want);

  // The reserved bytes of the request are ignored; extra readable bytes too.
  Bytes req = probe_req(0x8);
  for (size_t i = 0; i < 64; ++i) req[w::probe::kReserved + i] = 0xff;
  req.resize(100, 0xee);
  Bytes reply(516, 0xcc);
  CHECK(r.model->handle(req, reply) == 516);
  CHECK(reply[0] == 0x01);
  CHECK(reply[512] == OK);

  // A larger writable part: properties first, zeros, the tail at its very end.
  p = probe(r, 0x8, 600);
  CHECK(p.used == 600);
  CHECK(p.reply[0] == 0x01);
  CHECK(p.reply[4] == 0x01);
  for (size_t i = 24; i < 596; ++i) CHECK(p.reply[i] == 0);
  CHECK(p.reply[596] == OK);
}

TEST_CASE("viommu probe: a too small probe_size keeps whole properties, MSI first") {
  ViommuConfig c = test_config();
  c.probe_size = 60;
  Rig r(c);
  r.host.reserved_ranges[0x8] = {{Iova(0x1000), 0x1000}, {Iova(0x10000), 0x1000}};
  auto p = probe(r, 0x8, 64);
  CHECK(p.used == 64);
  Bytes want(64, 0);
  put_prop(want, 0, 1, 0xfee00000, 0xfeefffff);
  put_prop(want, 24, 0, 0x1000, 0x1fff);  // the second RESERVED does not fit: left out
  CHECK(p.reply == want);

  c.probe_size = 23;
  Rig tiny(c);
  p = probe(tiny, 0x8, 27);
  CHECK(p.used == 27);
  CHECK(p.reply == Bytes(27, 0));

  c.probe_size = 0;
  Rig none(c);
  p = probe(none, 0x8, 4);
  CHECK(p.used == 4);
  CHECK(p.reply == Bytes(4, 0));
}
