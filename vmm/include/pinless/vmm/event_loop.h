// EventLoop: the main thread's event loop, on Asio (standalone Asio from libasio-dev: header
// only, no Boost libraries to link). Event sources are file descriptors with a non-blocking
// handler: the VM-end eventfd, the stop-signal signalfd, the iommufd fault queues, the
// virtio-iommu's notifications. Lower layers know nothing of Asio; they expose an fd and an
// on_readable(). The control API's sockets (vmm/api/server.h) are Asio objects on context().
//
// Readiness is level-triggered per wait. Asio's Linux reactor registers each fd with EPOLLET,
// but every wait on an fd re-arms it with EPOLL_CTL_MOD (asio/detail/impl/epoll_reactor.ipp,
// start_op: waits are not performed speculatively), and the kernel then re-checks readiness:
// an fd still readable when its handler returns is reported again, and data that arrived
// while the handler ran is not lost. tests/unit/vmm/event_loop_test.cpp pins this down.
// A handler returns kWait (wait for the fd) or kAgain: it stopped at a budget with work left
// (FaultQueue's Drained::more) and runs again after the handlers ready now, without a syscall.
//
// One thread runs the loop (run()); stop() may be called from any thread. The loop borrows
// fds (their owners close them after the loop is destroyed or the source is removed).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "pinless/base/result.h"

namespace asio {
class io_context;
}

namespace pinless::vmm {

class EventLoop {
 public:
  enum class Next { kWait, kAgain };
  using Handler = std::function<Next()>;

  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Calls `handler` on the loop thread whenever `fd` becomes readable (or errors/hangs up).
  // `name` appears in error messages. The fd must stay open while the loop exists.
  [[nodiscard]] Status add_fd(int fd, std::string name, Handler handler);
  // Calls `fn` on the loop thread after `delay` (once), unless the loop stopped before.
  void after(std::chrono::milliseconds delay, std::function<void()> fn);
  // The Asio context, for event sources that are Asio objects themselves (the API server's
  // sockets); loop thread only.
  asio::io_context& context();
  // Runs handlers until stop(). Returns at once if stop() was already called.
  void run();
  // Runs the handlers that are ready now, without blocking; returns how many ran (tests).
  size_t poll();
  // Thread-safe.
  void stop();
  bool stopped() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pinless::vmm
