// RateLimit (base/include/pinless/base/log.h): the guard of every warning a guest can trigger.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "pinless/base/log.h"

using namespace pinless;

TEST_CASE("rate limit: the burst, then one in every N, and allowed_of counts exactly that") {
  RateLimit r(5, 100);
  uint64_t let = 0;
  for (uint64_t n = 1; n <= 1000; ++n) {
    if (r.allow()) ++let;
    CHECK(let == r.allowed_of(n));
    CHECK(r.count() == n);
  }
  // 5 of the burst, then events 6, 106, ..., 906.
  CHECK(let == 5 + 10);
  CHECK(RateLimit::allowed_of(0, 5, 100) == 0);
  CHECK(RateLimit::allowed_of(5, 5, 100) == 5);
  CHECK(RateLimit::allowed_of(6, 5, 100) == 6);
  CHECK(RateLimit::allowed_of(106, 5, 100) == 7);
  CHECK(RateLimit::allowed_of(20000, 5, 10000) == 7);
}

TEST_CASE("rate limit: concurrent callers never let more through than allowed_of") {
  RateLimit r(3, 10);
  std::atomic<uint64_t> let{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2500; ++i) let += r.allow() ? 1 : 0;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(r.count() == 10000);
  CHECK(let == RateLimit::allowed_of(10000, 3, 10));
}
