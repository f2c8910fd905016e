// The main event loop: how Asio reports readiness (edge-triggered), and the kAgain contract
// that FaultQueue's `more` relies on. Real pipes, no KVM.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "pinless/vmm/event_loop.h"

using namespace pinless;
using namespace pinless::vmm;

namespace {
struct Pipe {
  Pipe() {
    REQUIRE(::pipe2(fd, O_NONBLOCK | O_CLOEXEC) == 0);
  }
  ~Pipe() {
    ::close(fd[0]);
    ::close(fd[1]);
  }
  void put(const char* bytes) { REQUIRE(::write(fd[1], bytes, strlen(bytes)) == ssize_t(strlen(bytes))); }
  // One byte, or false when empty.
  bool take() {
    char c;
    return ::read(fd[0], &c, 1) == 1;
  }
  int fd[2];
};

// Runs what is ready until nothing is (each poll() runs the handlers ready now).
int drain(EventLoop& loop) {
  int ran = 0;
  while (size_t n = loop.poll()) ran += int(n);
  return ran;
}
}  // namespace

TEST_CASE("event loop: a handler that drains its fd runs once per new data") {
  Pipe p;
  EventLoop loop;
  int calls = 0;
  REQUIRE(loop.add_fd(p.fd[0], "pipe", [&] {
    ++calls;
    while (p.take()) {
    }
    return EventLoop::Next::kWait;
  }));
  drain(loop);
  CHECK(calls == 0);
  p.put("ab");
  drain(loop);
  CHECK(calls == 1);
  drain(loop);
  CHECK(calls == 1);
  p.put("c");
  drain(loop);
  CHECK(calls == 2);
}

// Asio registers fds with EPOLLET, but each wait re-arms the fd with EPOLL_CTL_MOD, so a
// source left readable is reported again. FaultQueue relies on this (a short read ends its
// call, and a group that did not fit is read on the next report); if Asio ever stops
// re-arming, this fails and FaultQueue must read until empty.
TEST_CASE("event loop: readiness is level-triggered per wait: an fd left readable is reported again") {
  Pipe p;
  EventLoop loop;
  int calls = 0;
  REQUIRE(loop.add_fd(p.fd[0], "pipe", [&] {
    ++calls;
    CHECK(p.take());  // one byte per call, then waits for the fd again
    return EventLoop::Next::kWait;
  }));
  p.put("xyz");
  drain(loop);
  CHECK(calls == 3);
  CHECK_FALSE(p.take());
}

TEST_CASE("event loop: kAgain runs the handler again without new data until it drains") {
  Pipe p;
  EventLoop loop;
  int calls = 0, bytes = 0;
  REQUIRE(loop.add_fd(p.fd[0], "pipe", [&] {
    ++calls;
    if (!p.take()) return EventLoop::Next::kWait;  // a budget of one byte per call
    ++bytes;
    return EventLoop::Next::kAgain;
  }));
  p.put("1234");
  drain(loop);
  CHECK(bytes == 4);
  CHECK(calls == 5);  // the fifth saw it empty
  p.put("5");
  drain(loop);
  CHECK(bytes == 5);
}

TEST_CASE("event loop: a source that says kAgain does not starve the others") {
  Pipe busy, other;
  EventLoop loop;
  int busy_calls = 0, other_calls = 0, busy_calls_when_other_ran = -1;
  REQUIRE(loop.add_fd(busy.fd[0], "busy", [&] {
    ++busy_calls;
    return busy.take() ? EventLoop::Next::kAgain : EventLoop::Next::kWait;
  }));
  REQUIRE(loop.add_fd(other.fd[0], "other", [&] {
    ++other_calls;
    busy_calls_when_other_ran = busy_calls;
    while (other.take()) {
    }
    return EventLoop::Next::kWait;
  }));
  busy.put("0123456789");
  other.put("!");
  drain(loop);
  CHECK(other_calls == 1);
  CHECK(busy_calls == 11);
  CHECK(busy_calls_when_other_ran < 11);  // served between the busy source's rounds
}

TEST_CASE("event loop: stop() from another thread ends run(), and run() after stop() returns at once") {
  EventLoop loop;
  Pipe p;
  REQUIRE(loop.add_fd(p.fd[0], "pipe", [] { return EventLoop::Next::kWait; }));
  std::thread t([&] { loop.run(); });
  loop.stop();
  t.join();
  CHECK(loop.stopped());
  loop.run();
}

TEST_CASE("event loop: an fd epoll cannot watch is dropped with an error, not spun on") {
  EventLoop loop;
  int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);  // epoll_ctl refuses it (EPERM)
  REQUIRE(fd >= 0);
  int calls = 0;
  REQUIRE(loop.add_fd(fd, "/dev/null", [&] {
    ++calls;
    return EventLoop::Next::kAgain;
  }));
  CHECK(drain(loop) == 1);  // the refused wait completes once, with an error
  CHECK(calls == 0);
  CHECK(loop.poll() == 0);
  ::close(fd);
}
