// SplitQueue against a scripted driver: chains are read as the driver wrote them, used
// entries land where the driver looks, and every way a driver can break the ring is an error
// that touches nothing outside guest RAM.
#include <doctest/doctest.h>

#include "unit/virtio/fake_guest_ram.h"

using namespace pinless;
using namespace pinless::testing;
using namespace pinless::virtio;

namespace {

constexpr Gpa kBase{0x100000};
constexpr uint64_t kRam = 0x40000;

struct Rig {
  FakeGuestRam ram{kBase, kRam};
  QueueLayout layout{8, kBase + 0x1000, kBase + 0x2000, kBase + 0x3000};
  TestDriver drv{ram, layout};
  SplitQueue q = SplitQueue::create(ram, layout).value();
};

}  // namespace

TEST_CASE("virtio queue: layout checks: size, alignment, rings inside RAM") {
  FakeGuestRam ram{kBase, kRam};
  QueueLayout ok{256, kBase, kBase + 0x1000, kBase + 0x2000};
  CHECK(SplitQueue::create(ram, ok).has_value());
  for (uint16_t bad : {0, 3, 100, 65535}) {
    QueueLayout l = ok;
    l.size = bad;
    auto q = SplitQueue::create(ram, l);
    REQUIRE_FALSE(q.has_value());
    CHECK(q.error().err() == EINVAL);
  }
  QueueLayout l = ok;
  l.desc = kBase + 8;  // 16-aligned required
  CHECK(SplitQueue::create(ram, l).error().err() == EINVAL);
  l = ok;
  l.driver = kBase + 0x1001;
  CHECK(SplitQueue::create(ram, l).error().err() == EINVAL);
  l = ok;
  l.device = kBase + 0x2002;
  CHECK(SplitQueue::create(ram, l).error().err() == EINVAL);
  l = ok;
  l.device = kBase + kRam - 8;  // used ring runs past the end of RAM
  CHECK(SplitQueue::create(ram, l).error().err() == EFAULT);
  l = ok;
  l.desc = Gpa(0);  // below RAM
  CHECK(SplitQueue::create(ram, l).error().err() == EFAULT);
  l = ok;
  l.size = 32768;
  l.desc = kBase;  // 512 KiB of descriptors do not fit in 256 KiB of RAM
  CHECK(SplitQueue::create(ram, l).error().err() == EFAULT);
}

TEST_CASE("virtio queue: a chain of readable then writable buffers, pushed back with its length") {
  Rig r;
  CHECK_FALSE(r.q.pop().value().has_value());
  r.drv.desc(3, kBase.value() + 0x8000, 24, kDescFlagNext, 5);
  r.drv.desc(5, kBase.value() + 0x9000, 8, kDescFlagNext, 1);
  r.drv.desc(1, kBase.value() + 0xa000, 64, kDescFlagWrite | kDescFlagNext, 2);
  r.drv.desc(2, kBase.value() + 0xb000, 4, kDescFlagWrite);
  r.drv.offer(3);
  std::memcpy(r.ram.at(kBase + 0x8000), "0123456789abcdefghijklmn", 24);
  std::memcpy(r.ram.at(kBase + 0x9000), "ABCDEFGH", 8);

  auto c = r.q.pop().value();
  REQUIRE(c.has_value());
  CHECK(c->head == 3);
  CHECK(c->readable.size() == 2);
  CHECK(c->writable.size() == 2);
  CHECK(c->readable_bytes() == 32);
  CHECK(c->writable_bytes() == 68);
  uint8_t in[40] = {};
  CHECK(c->gather(in) == 32);
  CHECK(std::memcmp(in, "0123456789abcdefghijklmnABCDEFGH", 32) == 0);
  std::vector<uint8_t> out(66, 0x5a);
  CHECK(c->scatter(out) == 66);  // 64 into the first writable buffer, 2 into the second
  CHECK(r.ram.get<uint8_t>(kBase + 0xb000 + 1) == 0x5a);
  CHECK(r.ram.get<uint8_t>(kBase + 0xb000 + 2) == 0);

  r.q.push(c->head, 66);
  CHECK(r.drv.used_idx() == 1);
  CHECK(r.drv.used(0) == std::pair<uint32_t, uint32_t>{3, 66});
  CHECK_FALSE(r.q.pop().value().has_value());
  CHECK(r.q.popped() == 1);
}

TEST_CASE("virtio queue: indices wrap around 65535 and the ring slot wraps at the size") {
  Rig r;
  r.drv.desc(0, kBase.value() + 0x8000, 4, 0);
  // Start both sides near the wrap, as after 65530 requests.
  r.ram.put<uint16_t>(r.layout.device + 2, 65530);
  r.drv.avail_idx = 65530;
  r.drv.used_seen = 65530;
  SplitQueue q = SplitQueue::create(r.ram, r.layout).value();
  for (int i = 0; i < 20; ++i) {
    r.drv.offer(0);
    auto c = q.pop().value();
    REQUIRE(c.has_value());
    q.push(c->head, uint32_t(i));
    CHECK(r.drv.used_idx() == uint16_t(65531 + i));
    CHECK(r.drv.used(uint16_t(65530 + i)).second == uint32_t(i));
  }
}

TEST_CASE("virtio queue: a driver that breaks the ring gets an error, never an access outside RAM") {
  auto broken = [](auto&& setup, int err) {
    Rig r;
    setup(r);
    auto c = r.q.pop();
    REQUIRE_FALSE(c.has_value());
    CHECK(c.error().err() == err);
    CHECK(r.drv.used_idx() == 0);  // nothing consumed or returned
    return c.error().message();
  };
  SUBCASE("head index out of range") {
    broken([](Rig& r) { r.drv.offer(8); }, EINVAL);
  }
  SUBCASE("next index out of range") {
    broken([](Rig& r) {
      r.drv.desc(0, kBase.value() + 0x8000, 4, kDescFlagNext, 9);
      r.drv.offer(0);
    }, EINVAL);
  }
  SUBCASE("a loop") {
    std::string m = broken([](Rig& r) {
      r.drv.desc(0, kBase.value() + 0x8000, 4, kDescFlagNext, 1);
      r.drv.desc(1, kBase.value() + 0x8000, 4, kDescFlagNext, 0);
      r.drv.offer(0);
    }, EINVAL);
    CHECK(m.find("loop") != std::string::npos);
  }
  SUBCASE("a self loop") {
    broken([](Rig& r) {
      r.drv.desc(2, kBase.value() + 0x8000, 4, kDescFlagNext, 2);
      r.drv.offer(2);
    }, EINVAL);
  }
  SUBCASE("buffer beyond RAM, straddling its end, or wrapping the address space") {
    broken([](Rig& r) {
      r.drv.desc(0, kBase.value() + kRam, 1, 0);
      r.drv.offer(0);
    }, EFAULT);
    broken([](Rig& r) {
      r.drv.desc(0, kBase.value() + kRam - 4, 8, 0);
      r.drv.offer(0);
    }, EFAULT);
    broken([](Rig& r) {
      r.drv.desc(0, ~0ull - 2, 16, 0);
      r.drv.offer(0);
    }, EFAULT);
  }
  SUBCASE("readable after writable") {
    broken([](Rig& r) {
      r.drv.desc(0, kBase.value() + 0x8000, 4, kDescFlagWrite | kDescFlagNext, 1);
      r.drv.desc(1, kBase.value() + 0x9000, 4, 0);
      r.drv.offer(0);
    }, EINVAL);
  }
  SUBCASE("indirect") {
    broken([](Rig& r) {
      r.drv.desc(0, kBase.value() + 0x8000, 16, kDescFlagIndirect);
      r.drv.offer(0);
    }, EINVAL);
  }
  SUBCASE("driver index too far ahead") {
    broken([](Rig& r) { r.drv.set_avail_idx(9); }, EINVAL);
  }
}

TEST_CASE("virtio queue: a chain whose lengths add up to more than 4 GiB is refused") {
  // RAM that accepts any range (as a guest with more than 4 GiB would), so that the length
  // sum is what refuses the chain. The spans are never touched: the walk fails first.
  struct AnyRam final : GuestRam {
    FakeGuestRam& rings;
    explicit AnyRam(FakeGuestRam& r) : rings(r) {}
    Result<std::span<uint8_t>> slice(Gpa gpa, uint64_t len) const override {
      if (gpa >= kBase && gpa < kBase + kRam) return rings.slice(gpa, std::min<uint64_t>(len, kBase + kRam - gpa));
      return std::span<uint8_t>();
    }
  };
  FakeGuestRam ram{kBase, kRam};
  AnyRam any{ram};
  QueueLayout layout{8, kBase + 0x1000, kBase + 0x2000, kBase + 0x3000};
  TestDriver drv{ram, layout};
  SplitQueue q = SplitQueue::create(any, layout).value();
  drv.desc(0, 1ull << 40, 0x80000000u, kDescFlagNext, 1);
  drv.desc(1, 1ull << 41, 0x80000000u, 0);
  drv.offer(0);
  auto c = q.pop();
  REQUIRE_FALSE(c.has_value());
  CHECK(c.error().err() == EINVAL);
  CHECK(c.error().message().find("4 GiB") != std::string::npos);
  drv.desc(1, 1ull << 41, 0x7fffffffu, 0);  // exactly 4 GiB - 1 in total: accepted
  SplitQueue q2 = SplitQueue::create(any, layout).value();
  auto ok = q2.pop();
  REQUIRE(ok.has_value());
  CHECK(ok->has_value());
}

TEST_CASE("virtio queue: NO_INTERRUPT from the driver is honoured") {
  Rig r;
  CHECK(r.q.wants_interrupt());
  r.ram.put<uint16_t>(r.layout.driver, kAvailFlagNoInterrupt);
  CHECK_FALSE(r.q.wants_interrupt());
}
