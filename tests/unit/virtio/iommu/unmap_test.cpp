#include <doctest/doctest.h>

#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "viommu_rig.h"

using namespace pinless;
using namespace pinless::virtio;
using namespace pinless::virtio::testing;
using Calls = std::vector<std::string>;

namespace {
constexpr uint32_t RW = w::map::kFlagRead | w::map::kFlagWrite;

// Byte granularity, so that the spec's UNMAP examples (addresses 0..14) apply as written.
// Endpoint 0x8 sits in domain 1; host calls so far are dropped.
struct ByteRig : Rig {
  static ViommuConfig config() {
    ViommuConfig c = test_config();
    c.page_size_mask = 1;
    return c;
  }
  ByteRig() : Rig(config()) {
    REQUIRE(attach(1, 0x8) == OK);
    take_calls();
  }
  std::vector<std::pair<uint64_t, uint64_t>> ranges() const {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    for (const auto& m : mappings(1)) out.emplace_back(m.virt_start, m.virt_end);
    return out;
  }
};
using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;
}  // namespace

TEST_CASE("viommu unmap: the specification's seven examples") {
  {  // (1) nothing mapped: succeeds, unmaps nothing
    ByteRig r;
    CHECK(r.unmap(1, 0, 4) == OK);
    CHECK(r.take_calls().empty());
  }
  {  // (2) exactly one mapping
    ByteRig r;
    CHECK(r.map(1, 0, 9, 0x100) == OK);
    r.take_calls();
    CHECK(r.unmap(1, 0, 9) == OK);
    CHECK(r.ranges().empty());
    CHECK(r.take_calls() == Calls{"unmap 1 0x0+0xa"});
  }
  {  // (3) two adjacent mappings, both removed, one host call each
    ByteRig r;
    CHECK(r.map(1, 0, 4, 0x100) == OK);
    CHECK(r.map(1, 5, 9, 0x200) == OK);
    r.take_calls();
    CHECK(r.unmap(1, 0, 9) == OK);
    CHECK(r.ranges().empty());
    CHECK(r.take_calls() == Calls{"unmap 1 0x0+0x5", "unmap 1 0x5+0x5"});
  }
  {  // (4) would split: fails, removes nothing
    ByteRig r;
    CHECK(r.map(1, 0, 9, 0x100) == OK);
    r.take_calls();
    CHECK(r.unmap(1, 0, 4) == RANGE);
    CHECK(r.ranges() == Ranges{{0, 9}});
    CHECK(r.take_calls().empty());
  }
  {  // (5) the first of two
    ByteRig r;
    CHECK(r.map(1, 0, 4, 0x100) == OK);
    CHECK(r.map(1, 5, 9, 0x200) == OK);
    CHECK(r.unmap(1, 0, 4) == OK);
    CHECK(r.ranges() == Ranges{{5, 9}});
  }
  {  // (6) spill-over past the end
    ByteRig r;
    CHECK(r.map(1, 0, 4, 0x100) == OK);
    CHECK(r.unmap(1, 0, 9) == OK);
    CHECK(r.ranges().empty());
  }
  {  // (7) a hole in the middle
    ByteRig r;
    CHECK(r.map(1, 0, 4, 0x100) == OK);
    CHECK(r.map(1, 10, 14, 0x200) == OK);
    CHECK(r.unmap(1, 0, 14) == OK);
    CHECK(r.ranges().empty());
    CHECK(inconsistency(*r.model, r.host, r.cfg) == "");
  }
}

TEST_CASE("viommu unmap: RANGE with nothing removed when either end would split") {
  ByteRig r;
  CHECK(r.map(1, 0, 4, 0x100) == OK);
  CHECK(r.map(1, 5, 9, 0x200) == OK);
  CHECK(r.map(1, 10, 14, 0x300) == OK);
  r.take_calls();
  CHECK(r.unmap(1, 0, 12) == RANGE);   // the last one split
  CHECK(r.unmap(1, 7, 20) == RANGE);   // the first one split
  CHECK(r.unmap(1, 2, 12) == RANGE);   // both
  CHECK(r.unmap(1, 6, 6) == RANGE);    // inside one
  CHECK(r.ranges() == Ranges{{0, 4}, {5, 9}, {10, 14}});
  CHECK(r.take_calls().empty());
  CHECK(r.unmap(1, 5, 20) == OK);
  CHECK(r.ranges() == Ranges{{0, 4}});
  CHECK(r.unmap(1, 0, ~0ull) == OK);  // the whole space
  CHECK(r.ranges().empty());
}

TEST_CASE("viommu unmap: RANGE for end < start, NOENT for a missing domain, INVAL on bypass") {
  ByteRig r;
  CHECK(r.map(1, 0, 4, 0x100) == OK);
  CHECK(r.unmap(1, 4, 0) == RANGE);
  CHECK(r.unmap(2, 0, 4) == NOENT);
  CHECK(r.attach(3, 0x10, w::attach::kFlagBypass) == OK);
  CHECK(r.unmap(3, 0, 4) == INVAL);
  CHECK(r.ranges() == Ranges{{0, 4}});
  // The reserved bytes are ignored.
  auto req = unmap_req(1, 0, 4);
  for (size_t i = 0; i < 4; ++i) req[w::unmap::kReserved + i] = 0xff;
  CHECK(r.send(req) == OK);
  CHECK(r.ranges().empty());
}

TEST_CASE("viommu unmap: flags-0 mappings never reach the host; host ENOENT counts as done") {
  ByteRig r;
  CHECK(r.map(1, 0, 4, 0x100, 0) == OK);
  CHECK(r.map(1, 5, 9, 0x200, RW) == OK);
  r.take_calls();
  r.host.fail_next["unmap"] = ENOENT;
  CHECK(r.unmap(1, 0, 9) == OK);
  CHECK(r.take_calls() == Calls{"unmap 1 0x5+0x5"});
  CHECK(r.ranges().empty());
  CHECK(inconsistency(*r.model, r.host, r.cfg) == "");
}

TEST_CASE("viommu unmap: a host failure keeps the mapping it could not remove") {
  const std::vector<std::pair<int, uint8_t>> rows{
      {EIO, DEVERR}, {EINVAL, DEVERR}, {EBUSY, DEVERR}, {ENOMEM, NOMEM}, {EFAULT, FAULT}};
  for (const auto& [err, status] : rows) {
    CAPTURE(err);
    ByteRig r;
    CHECK(r.map(1, 0, 4, 0x100) == OK);
    CHECK(r.map(1, 5, 9, 0x200) == OK);
    r.take_calls();
    r.host.fail_next["unmap"] = err;
    CHECK(r.unmap(1, 5, 9) == status);
    CHECK(r.ranges() == Ranges{{0, 4}, {5, 9}});
    CHECK(r.unmap(1, 0, 9) == OK);  // retried: both go
    CHECK(r.ranges().empty());
    CHECK(r.take_calls() == Calls{"unmap 1 0x5+0x5", "unmap 1 0x0+0x5", "unmap 1 0x5+0x5"});
    CHECK(r.model->stats().mappings == 0);
    CHECK(inconsistency(*r.model, r.host, r.cfg) == "");
  }
}
