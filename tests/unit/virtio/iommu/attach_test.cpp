#include <doctest/doctest.h>

#include <cerrno>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "viommu_rig.h"

using namespace pinless;
using namespace pinless::virtio;
using namespace pinless::virtio::testing;
using Calls = std::vector<std::string>;

TEST_CASE("viommu attach: lifecycle of domains, in host-call order") {
  Rig r;
  CHECK(r.take_calls().empty());  // bypass is the default: nothing to do at creation

  CHECK(r.attach(1, 0x8) == OK);
  CHECK(r.take_calls() == Calls{"attach 0x8 1"});
  CHECK(r.attach(1, 0x10) == OK);
  CHECK(r.take_calls() == Calls{"attach 0x10 1"});
  CHECK(r.model->state().domains.at(1).endpoints == std::set<uint32_t>{0x8, 0x10});
  CHECK(r.map(1, 0x1000, 0x1fff, 0xa000) == OK);
  CHECK(r.take_calls() == Calls{"map 1 0x1000+0x1000 0xa000 rw"});

  // Re-attach = detach + attach, done as one replace: never through bypass. Domain 1 keeps
  // its other endpoint and its mapping.
  CHECK(r.attach(2, 0x8) == OK);
  CHECK(r.take_calls() == Calls{"attach 0x8 2"});
  CHECK(r.mappings(1).size() == 1);
  // The last endpoint leaves domain 1: it dies, mappings and all.
  CHECK(r.attach(2, 0x10) == OK);
  CHECK(r.take_calls() == Calls{"attach 0x10 2", "destroy 1"});
  CHECK(r.model->state().domains.count(1) == 0);
  CHECK(r.model->stats().mappings == 0);
  // Attaching where it already is changes nothing.
  CHECK(r.attach(2, 0x10) == OK);
  CHECK(r.take_calls().empty());

  CHECK(r.detach(2, 0x8) == OK);
  CHECK(r.take_calls() == Calls{"bypass 0x8"});
  CHECK(r.detach(2, 0x10) == OK);
  CHECK(r.take_calls() == Calls{"bypass 0x10", "destroy 2"});
  CHECK(r.model->stats().domains == 0);
  CHECK(inconsistency(*r.model, r.host, r.cfg) == "");

  // A dead domain's ID can be used again, and starts empty.
  CHECK(r.attach(1, 0x18) == OK);
  CHECK(r.mappings(1).empty());
  CHECK(r.take_calls() == Calls{"attach 0x18 1"});
  CHECK(r.unmap(1, 0, ~0ull) == OK);
  CHECK(r.take_calls().empty());
}

TEST_CASE("viommu attach: INVAL for reserved bytes, unknown flags and BYPASS without the feature") {
  Rig r;
  for (size_t i = 0; i < 4; ++i) {
    auto req = attach_req(1, 0x8);
    req[w::attach::kReserved + i] = 0x01;
    CHECK(r.send(req) == INVAL);
  }
  CHECK(r.attach(1, 0x8, 0x2) == INVAL);
  CHECK(r.attach(1, 0x8, 0x80000000) == INVAL);
  CHECK(r.attach(1, 0x8, w::attach::kFlagBypass | 0x4) == INVAL);
  CHECK(r.take_calls().empty());
  CHECK(r.model->state().domains.empty());
  // The head's reserved bytes are ignored.
  auto req = attach_req(1, 0x8);
  req[1] = req[2] = req[3] = 0xff;
  CHECK(r.send(req) == OK);

  Rig nb(test_config(), kAllFeatures & ~w::kFBypassConfig);
  CHECK(nb.attach(1, 0x8, w::attach::kFlagBypass) == INVAL);
  CHECK(nb.attach(1, 0x8) == OK);
}

TEST_CASE("viommu attach: NOENT for an unknown endpoint, RANGE outside domain_range") {
  ViommuConfig c = test_config();
  c.domain_start = 10;
  c.domain_end = 20;
  Rig r(c);
  CHECK(r.attach(10, 0x9) == NOENT);
  CHECK(r.attach(10, 0) == NOENT);
  CHECK(r.attach(9, 0x8) == RANGE);
  CHECK(r.attach(21, 0x8) == RANGE);
  CHECK(r.attach(0, 0x8) == RANGE);
  CHECK(r.attach(0xffffffff, 0x8) == RANGE);
  CHECK(r.take_calls().empty());
  CHECK(r.attach(10, 0x8) == OK);
  CHECK(r.attach(20, 0x10) == OK);

  Rig d;  // default [1, 65535]
  CHECK(d.attach(0, 0x8) == RANGE);
  CHECK(d.attach(65536, 0x8) == RANGE);
  CHECK(d.attach(65535, 0x8) == OK);
}

TEST_CASE("viommu attach: bypass domains, and the BYPASS flag must match the domain") {
  Rig r;
  CHECK(r.attach(1, 0x8) == OK);
  CHECK(r.attach(1, 0x10, w::attach::kFlagBypass) == INVAL);
  CHECK(r.attach(3, 0x10, w::attach::kFlagBypass) == OK);
  CHECK(r.attach(3, 0x18) == INVAL);
  CHECK(r.take_calls() == Calls{"attach 0x8 1"});  // 0x10 was in bypass already
  CHECK(r.model->state().domains.at(3).bypass);

  CHECK(r.map(3, 0x1000, 0x1fff, 0x1000) == INVAL);
  CHECK(r.unmap(3, 0x1000, 0x1fff) == INVAL);
  // From a translated domain into a bypass one: identity, then the old domain dies.
  CHECK(r.attach(3, 0x8, w::attach::kFlagBypass) == OK);
  CHECK(r.take_calls() == Calls{"bypass 0x8", "destroy 1"});
  CHECK(r.detach(3, 0x8) == OK);
  CHECK(r.detach(3, 0x10) == OK);
  CHECK(r.take_calls().empty());  // bypass domains have nothing on the host
  CHECK(r.model->state().domains.empty());

  ViommuConfig c = test_config();
  c.bypass = false;
  Rig b(c);
  CHECK(b.take_calls() == Calls{"block 0x8", "block 0x10", "block 0x18"});
  CHECK(b.attach(3, 0x8, w::attach::kFlagBypass) == OK);
  CHECK(b.take_calls() == Calls{"bypass 0x8"});
  CHECK(b.detach(3, 0x8) == OK);
  CHECK(b.take_calls() == Calls{"block 0x8"});
  CHECK(inconsistency(*b.model, b.host, b.cfg) == "");
}

TEST_CASE("viommu attach: host errors become statuses and leave nothing recorded") {
  const std::vector<std::pair<int, uint8_t>> rows{
      {EINVAL, UNSUPP}, {EOPNOTSUPP, UNSUPP}, {EBUSY, UNSUPP}, {ENOMEM, NOMEM}, {ENOSPC, NOMEM},
      {EFAULT, FAULT},  {EIO, DEVERR},        {ENODEV, DEVERR}, {EPERM, DEVERR}};
  for (const auto& [err, status] : rows) {
    CAPTURE(err);
    Rig r;
    r.host.fail_next["attach"] = err;
    CHECK(r.attach(1, 0x8) == status);
    // The first attach of a domain failed: the host frees whatever it half-created.
    CHECK(r.take_calls() == Calls{"attach 0x8 1", "destroy 1"});
    CHECK(r.model->state().domains.empty());
    CHECK_FALSE(r.model->state().endpoints.at(0x8).domain);
    CHECK(inconsistency(*r.model, r.host, r.cfg) == "");
  }

  Rig r;
  CHECK(r.attach(1, 0x8) == OK);
  CHECK(r.map(1, 0x1000, 0x1fff, 0xa000) == OK);
  r.take_calls();
  r.host.fail_next["attach"] = EBUSY;
  CHECK(r.attach(1, 0x10) == UNSUPP);  // joining an existing domain: it stays
  CHECK(r.take_calls() == Calls{"attach 0x10 1"});
  r.host.fail_next["attach"] = EINVAL;
  CHECK(r.attach(2, 0x8) == UNSUPP);  // re-attach refused: still in domain 1, mapping kept
  CHECK(r.take_calls() == Calls{"attach 0x8 2", "destroy 2"});
  CHECK(r.model->state().endpoints.at(0x8).domain == 1u);
  CHECK(r.mappings(1).size() == 1);
  CHECK(r.model->state().domains.count(2) == 0);
  CHECK(inconsistency(*r.model, r.host, r.cfg) == "");

  r.host.fail_next["bypass"] = EBUSY;
  CHECK(r.attach(3, 0x8, w::attach::kFlagBypass) == UNSUPP);
  CHECK(r.take_calls() == Calls{"bypass 0x8"});
  CHECK(r.model->state().domains.count(3) == 0);
  CHECK(r.model->state().endpoints.at(0x8).domain == 1u);
  CHECK(inconsistency(*r.model, r.host, r.cfg) == "");
}

TEST_CASE("viommu attach: an endpoint whose reserved IOVA is mapped in the domain is UNSUPP") {
  Rig r;
  r.host.reserved_ranges[0x10] = {{Iova(0x100000), 0x10000}};
  CHECK(r.attach(1, 0x8) == OK);
  CHECK(r.map(1, 0x100000, 0x100fff, 0x5000) == OK);  // 0x8 has no reserved range
  r.take_calls();
  CHECK(r.attach(1, 0x10) == UNSUPP);
  CHECK(r.take_calls().empty());
  CHECK(r.attach(2, 0x10) == OK);  // an empty domain is fine
}

TEST_CASE("viommu detach: NOENT, INVAL, ignored reserved bytes and host failures") {
  Rig r;
  CHECK(r.detach(1, 0x9) == NOENT);
  CHECK(r.detach(1, 0x8) == INVAL);  // not attached, domain missing
  CHECK(r.attach(1, 0x8) == OK);
  CHECK(r.attach(2, 0x10) == OK);
  CHECK(r.detach(2, 0x8) == INVAL);  // attached elsewhere
  CHECK(r.detach(7, 0x8) == INVAL);
  r.take_calls();

  r.host.fail_next["bypass"] = EIO;
  CHECK(r.detach(1, 0x8) == DEVERR);
  r.host.fail_next["bypass"] = EBUSY;
  CHECK(r.detach(1, 0x8) == UNSUPP);
  CHECK(r.take_calls() == Calls{"bypass 0x8", "bypass 0x8"});
  CHECK(r.model->state().endpoints.at(0x8).domain == 1u);  // still attached
  CHECK(inconsistency(*r.model, r.host, r.cfg) == "");

  auto req = detach_req(1, 0x8);
  for (size_t i = 0; i < 8; ++i) req[w::detach::kReserved + i] = 0xff;
  CHECK(r.send(req) == OK);
  CHECK(r.take_calls() == Calls{"bypass 0x8", "destroy 1"});
  CHECK(inconsistency(*r.model, r.host, r.cfg) == "");
}
