// Deterministic random requests (fixed seed, raw generator output only, so every platform
// sees the same sequence). Asserts invariants, not outcomes: no crash, the used length is 0
// or the whole writable part, nothing written when it is 0, a valid tail otherwise, and the
// model's state consistent with itself and with the fake host after every step.
#include <doctest/doctest.h>

#include <array>
#include <cerrno>
#include <random>
#include <string>
#include <vector>

#include "viommu_rig.h"

using namespace pinless;
using namespace pinless::virtio;
using namespace pinless::virtio::testing;
using Bytes = std::vector<uint8_t>;

namespace {

class Gen {
 public:
  explicit Gen(uint64_t seed) : rng_(seed) {}
  uint64_t u64() { return rng_(); }
  uint64_t below(uint64_t n) { return rng_() % n; }
  bool chance(uint64_t percent) { return below(100) < percent; }
  template <typename T, size_t N>
  T pick(const std::array<T, N>& a) { return a[below(N)]; }

  uint32_t domain() {
    if (chance(75)) return uint32_t(1 + below(2));
    return chance(60) ? pick(std::array<uint32_t, 4>{3, 4, 0, 7}) : uint32_t(u64());
  }
  uint32_t endpoint() {
    return chance(90) ? pick(std::array<uint32_t, 5>{0x8, 0x10, 0x18, 0x8, 0x9}) : uint32_t(u64());
  }
  // Mostly page-aligned addresses in a small window so that maps collide and unmaps hit.
  uint64_t addr() {
    if (chance(80)) return below(64) * 0x1000;
    if (chance(50)) return 0xfee00000 + below(4) * 0x80000;
    return u64();
  }
  uint64_t end_for(uint64_t start) {
    if (chance(85)) return start + (below(8) + 1) * 0x1000 - 1;
    return chance(50) ? start + below(0x3000) : u64();
  }
  uint32_t map_flags() { return chance(90) ? uint32_t(below(8)) : uint32_t(u64()); }

 private:
  std::mt19937_64 rng_;
};

struct Request {
  Bytes bytes;
  size_t reply_size = 0;
  const char* host_call = "";  // the host call this request is most likely to make
};

Request random_request(Gen& g, uint32_t probe_size) {
  Request r;
  const uint64_t kind = g.below(100);
  if (kind < 10) {
    const uint32_t flags = g.chance(85) ? 0 : g.chance(80) ? 1 : uint32_t(g.u64());
    r.bytes = attach_req(g.domain(), g.endpoint(), flags);
    r.host_call = flags == 1 ? "bypass" : "attach";
  } else if (kind < 15) {
    r.bytes = detach_req(g.domain(), g.endpoint());
    r.host_call = g.chance(50) ? "bypass" : "block";
  } else if (kind < 55) {
    const uint64_t s = g.addr();
    const uint32_t flags = g.chance(90) ? g.pick(std::array<uint32_t, 5>{1, 2, 3, 3, 0})
                                        : g.map_flags();
    r.bytes = map_req(g.domain(), s, g.end_for(s), g.addr(), flags);
    r.host_call = "map";
  } else if (kind < 68) {
    const uint64_t s = g.chance(5) ? 0 : g.addr();
    r.bytes = unmap_req(g.domain(), s, g.chance(5) ? ~0ull : g.end_for(s));
    r.host_call = "unmap";
  } else if (kind < 80) {
    r.bytes = probe_req(g.endpoint());
  } else {  // raw bytes, any type
    r.bytes.resize(g.below(100));
    for (auto& b : r.bytes) b = uint8_t(g.u64());
    if (!r.bytes.empty() && g.chance(70)) r.bytes[0] = uint8_t(g.below(7));
  }
  Bytes& req = r.bytes;
  if (g.chance(10)) req.resize(g.below(req.size() + 8), uint8_t(g.u64()));  // truncate / pad
  if (g.chance(10) && !req.empty()) req[g.below(req.size())] ^= uint8_t(1u << g.below(8));
  const size_t proper = !req.empty() && req[0] == 5 ? probe_size + 4 : 4;
  r.reply_size = g.chance(85) ? proper : size_t(g.below(600));
  return r;
}

}  // namespace

TEST_CASE("viommu fuzz: random requests keep the model sound") {
  ViommuConfig c = test_config();
  c.domain_end = 6;
  c.input_end = (1ull << 32) - 1;
  c.max_mappings_per_domain = 24;
  Rig r(c);
  r.host.reserved_ranges[0x10] = {{Iova(0x20000), 0x4000}};
  Gen g(0x7669'6f6d'6d75ull);
  const std::array<int, 7> errs{ENOMEM, EFAULT, EINVAL, EBUSY, EIO, ENOENT, ENOSPC};
  uint64_t answered = 0, max_domains = 0, max_mappings = 0;

  for (int i = 0; i < 4000; ++i) {
    CAPTURE(i);
    const uint64_t what = g.below(100);
    if (what < 1) {
      r.model->reset();
      r.model->set_features(g.chance(80) ? kAllFeatures : g.u64());
    } else if (what < 4) {
      Bytes b(g.below(9), uint8_t(g.u64()));
      r.model->config_write(g.chance(70) ? 32 + g.below(8) : g.u64(), b);
    } else if (what < 6) {
      Bytes b(g.below(16), 0xcc);
      r.model->config_read(g.chance(70) ? g.below(48) : g.u64(), b);
    } else {
      const Request rq = random_request(g, c.probe_size);
      const Bytes& req = rq.bytes;
      if (g.chance(8)) r.host.fail_next[rq.host_call] = g.pick(errs);
      Bytes reply(rq.reply_size, 0xcc);
      const Bytes untouched = reply;
      const uint32_t used = r.model->handle(req, reply);
      r.host.fail_next.clear();  // an injected failure applies to this request only
      if (used == 0) {
        if (reply != untouched) FAIL_CHECK("used length 0 but the reply was written");
      } else {
        ++answered;
        if (used != reply.size()) FAIL_CHECK("used length " << used << " of " << reply.size());
        const uint8_t* tail = reply.data() + reply.size() - 4;
        if (tail[0] > NOMEM || tail[1] || tail[2] || tail[3]) FAIL_CHECK("bad tail");
      }
    }
    const std::string bad = inconsistency(*r.model, r.host, c);
    if (!bad.empty()) {
      FAIL_CHECK(bad);
      break;
    }
    const auto st = r.model->stats();
    max_domains = std::max<uint64_t>(max_domains, st.domains);
    max_mappings = std::max<uint64_t>(max_mappings, st.mappings);
  }
  // The walk must have reached the interesting states, or it proves little.
  const auto st = r.model->stats();
  CHECK(answered > 2000);
  CHECK(max_domains >= 3);
  CHECK(max_mappings >= 10);
  for (uint8_t s : {OK, UNSUPP, DEVERR, INVAL, RANGE, NOENT, FAULT, NOMEM}) {
    CAPTURE(int(s));
    CHECK(st.status[s] > 0);
  }
  CHECK(st.dropped > 100);
}
