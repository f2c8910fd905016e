#include "pinless/vmm/event_loop.h"

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <vector>

#include "pinless/base/log.h"

namespace pinless::vmm {

struct EventLoop::Impl {
  struct Source {
    Source(asio::io_context& ctx, int fd, std::string n, Handler h)
        : sd(ctx, fd), name(std::move(n)), handler(std::move(h)) {}
    // Borrowed fd: deregister it from the reactor without closing it.
    ~Source() { (void)sd.release(); }
    asio::posix::stream_descriptor sd;
    std::string name;
    Handler handler;
  };

  void arm(Source* s) {
    s->sd.async_wait(asio::posix::stream_descriptor::wait_read, [this, s](const asio::error_code& ec) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) {
        // The reactor refused the fd (not a guest problem): stop watching it rather than spin.
        logger("vmm")->error("event loop: {}: {}; no longer watched", s->name, ec.message());
        return;
      }
      dispatch(s);
    });
  }
  // Edge-triggered: a handler that stopped early is queued again behind what is ready now.
  void dispatch(Source* s) {
    if (s->handler() == Next::kAgain) {
      asio::post(ctx, [this, s] { dispatch(s); });
    } else {
      arm(s);
    }
  }

  // Declared first, destroyed last: the sources deregister from its reactor before it goes.
  asio::io_context ctx{1};
  std::vector<std::unique_ptr<Source>> sources;
  std::vector<std::unique_ptr<asio::steady_timer>> timers;  // after(); few, kept until the end
};

EventLoop::EventLoop() : impl_(std::make_unique<Impl>()) {}
EventLoop::~EventLoop() = default;

Status EventLoop::add_fd(int fd, std::string name, Handler handler) {
  std::unique_ptr<Impl::Source> s;
  try {
    // Registers the fd with epoll now (EPOLL_CTL_ADD): readiness from before is reported too.
    s = std::make_unique<Impl::Source>(impl_->ctx, fd, name, std::move(handler));
  } catch (const std::system_error& e) {
    return fail("epoll_ctl", e.code().value(), "event loop: " + name);
  }
  impl_->arm(s.get());
  impl_->sources.push_back(std::move(s));
  return {};
}

void EventLoop::after(std::chrono::milliseconds delay, std::function<void()> fn) {
  auto timer = std::make_unique<asio::steady_timer>(impl_->ctx, delay);
  timer->async_wait([fn = std::move(fn)](const asio::error_code& ec) {
    if (!ec) fn();
  });
  impl_->timers.push_back(std::move(timer));
}

asio::io_context& EventLoop::context() { return impl_->ctx; }

void EventLoop::run() { impl_->ctx.run(); }
size_t EventLoop::poll() { return impl_->ctx.poll(); }
void EventLoop::stop() { impl_->ctx.stop(); }
bool EventLoop::stopped() const { return impl_->ctx.stopped(); }

}  // namespace pinless::vmm
