#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "viommu_rig.h"

using namespace pinless;
using namespace pinless::virtio;
using namespace pinless::virtio::testing;
using Bytes = std::vector<uint8_t>;

TEST_CASE("viommu parse: every truncated request is used with length 0, nothing written") {
  Rig r;
  REQUIRE(r.attach(1, 0x8) == OK);
  REQUIRE(r.map(1, 0x1000, 0x1fff, 0xa000) == OK);
  r.take_calls();
  const auto before = r.model->state();
  const std::vector<Bytes> full{attach_req(2, 0x10), detach_req(1, 0x8),
                                map_req(1, 0x2000, 0x2fff, 0xb000), unmap_req(1, 0, ~0ull),
                                probe_req(0x8)};
  uint64_t dropped = 0;
  for (const Bytes& req : full) {
    for (size_t len = 0; len < req.size(); ++len) {
      CAPTURE(int(req[0]));
      CAPTURE(len);
      Bytes reply(516, 0xcc);
      CHECK(r.model->handle(std::span(req).first(len), reply) == 0);
      CHECK(reply == Bytes(516, 0xcc));
      ++dropped;
    }
  }
  CHECK(r.model->stats().dropped == dropped);
  CHECK(r.host.calls.empty());
  const auto after = r.model->state();
  CHECK(after.domains.at(1).mappings == before.domains.at(1).mappings);
  CHECK(after.endpoints.at(0x10).domain == before.endpoints.at(0x10).domain);
  // Requests shorter than the head count as type-less; the others under their type.
  const auto st = r.model->stats();
  CHECK(st.requests[0] == 5 * 4);
  CHECK(st.requests[1] == 1 + (20 - 4));  // the rig's own ATTACH, then lengths 4..19
  CHECK(st.requests[5] == 72 - 4);
}

TEST_CASE("viommu parse: no room for the tail") {
  Rig r;
  for (size_t n = 0; n < 4; ++n) {
    CAPTURE(n);
    Bytes reply(n, 0xcc);
    CHECK(r.model->handle(attach_req(1, 0x8), reply) == 0);
    CHECK(r.model->handle(probe_req(0x8), reply) == 0);
    CHECK(reply == Bytes(n, 0xcc));
  }
  CHECK(r.host.calls.empty());
  CHECK_FALSE(r.model->state().endpoints.at(0x8).domain);
}

TEST_CASE("viommu parse: unknown types are not answered") {
  Rig r;
  for (uint8_t type : {0, 6, 7, 0x80, 0xff}) {
    CAPTURE(int(type));
    Bytes req(64, 0);
    req[0] = type;
    Bytes reply(64, 0xcc);
    CHECK(r.model->handle(req, reply) == 0);
    CHECK(reply == Bytes(64, 0xcc));
  }
  CHECK(r.model->stats().requests[0] == 5);
  CHECK(r.model->stats().dropped == 5);
}

TEST_CASE("viommu parse: extra readable bytes are ignored; the tail ends the writable part") {
  Rig r;
  Bytes req = attach_req(1, 0x8);
  req.resize(req.size() + 8, 0xff);
  Bytes reply(12, 0xcc);
  CHECK(r.model->handle(req, reply) == 12);
  CHECK(reply == Bytes{0, 0, 0, 0, 0, 0, 0, 0, OK, 0, 0, 0});
  CHECK(r.model->state().endpoints.at(0x8).domain == 1u);
}

TEST_CASE("viommu stats: counted by type and by status") {
  Rig r;
  CHECK(r.attach(1, 0x8) == OK);
  CHECK(r.attach(1, 0x9) == NOENT);
  CHECK(r.map(1, 0x1000, 0x1fff, 0xa000) == OK);
  CHECK(r.map(1, 0x1000, 0x1fff, 0xa000) == INVAL);
  CHECK(r.map(1, 0x1001, 0x1fff, 0xa000) == RANGE);
  CHECK(r.unmap(1, 0, ~0ull) == OK);
  CHECK(r.detach(1, 0x8) == OK);
  Bytes reply(516);
  CHECK(r.model->handle(probe_req(0x8), reply) == 516);
  std::array<uint8_t, 4> tail{};
  CHECK(r.model->handle(Bytes{9, 0, 0, 0}, tail) == 0);
  const auto st = r.model->stats();
  CHECK(st.requests == std::array<uint64_t, 6>{1, 2, 1, 3, 1, 1});
  CHECK(st.status == std::array<uint64_t, 9>{5, 0, 0, 0, 1, 1, 1, 0, 0});
  CHECK(st.dropped == 1);
  CHECK(st.domains == 0);
  CHECK(st.mappings == 0);
}

TEST_CASE("viommu stats: read from another thread while requests are served") {
  Rig r;
  std::atomic<bool> done{false};
  std::thread reader([&] {
    uint64_t last = 0;
    while (!done.load()) {
      const auto st = r.model->stats();
      const uint64_t n = st.requests[1] + st.requests[2];
      if (n < last) break;  // counters never go back
      last = n;
    }
  });
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(r.attach(1, 0x8) == OK);
    REQUIRE(r.detach(1, 0x8) == OK);
  }
  done = true;
  reader.join();
  CHECK(r.model->stats().requests[1] == 1000);
  CHECK(r.model->stats().requests[2] == 1000);
}
