#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fakes/fake_sys.h"
#include "pinless/base/fd.h"

using namespace pinless;
using pinless::testing::FakeSys;

TEST_CASE("UniqueFd closes through the Sys it came from, once, also after a move") {
  FakeSys sys;
  int fd = sys.new_fd();
  {
    UniqueFd a(sys, fd);
    UniqueFd b(std::move(a));
    CHECK_FALSE(a.valid());
    CHECK(b.get() == fd);
    CHECK(sys.open_fds() == 1);
  }
  CHECK(sys.open_fds() == 0);
  CHECK(sys.count_what("close") == 1);
}

TEST_CASE("UniqueFd without a Sys closes a libc fd for real; release() keeps it open") {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  { UniqueFd r(p[0]); }
  CHECK(::fcntl(p[0], F_GETFD) == -1);
  UniqueFd w(p[1]);
  int kept = w.release();
  CHECK(::fcntl(kept, F_GETFD) != -1);
  ::close(kept);
}

TEST_CASE("MappedMemory unmaps through the Sys it came from, once, also after a move") {
  FakeSys sys;
  int err = 0;
  void* p = sys.mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sys.new_fd(), 0, &err);
  REQUIRE(p != MAP_FAILED);
  {
    MappedMemory a(sys, p, 4096);
    MappedMemory b;
    b = std::move(a);
    CHECK_FALSE(a.valid());
    CHECK(b.bytes() == p);
  }
  CHECK(sys.live_mappings() == 0);
  CHECK(sys.count_what("munmap") == 1);
}
