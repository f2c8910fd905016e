#include "pinless/vmm/api/server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <optional>

#include <asio/io_context.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include "pinless/base/fd.h"
#include "pinless/base/log.h"
#include "pinless/vmm/api/http_codec.h"
#include "pinless/vmm/api/router.h"

namespace pinless::vmm::api {

using asio::local::stream_protocol;

struct ApiServer::Shared {
  Shared(asio::io_context& ctx, VmControl& v, ServerLimits l) : acceptor(ctx), vm(v), limits(l) {}
  stream_protocol::acceptor acceptor;
  VmControl& vm;
  ServerLimits limits;
  ServerStats stats;
  bool closed = false;
};

namespace {

void count_response(ServerStats& s, int status) {
  if (status < 300) {
    s.responses_2xx++;
  } else if (status < 500) {
    s.responses_4xx++;
  } else {
    s.responses_5xx++;
  }
}

// One client connection: reads requests (pipelined or one after another), answers each in
// order, closes on an error, on "Connection: close" or at the deadline. Owned by the Asio
// handlers in flight (shared_from_this); the server's Shared state outlives them.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(stream_protocol::socket sock, std::shared_ptr<ApiServer::Shared> shared)
      : sock_(std::move(sock)), deadline_(sock_.get_executor()), shared_(std::move(shared)) {}
  ~Connection() { shared_->stats.open--; }

  void start() {
    shared_->stats.open++;
    shared_->stats.connections++;
    new_request();
    read();
  }

  // Over the connection limit: one 503, then close.
  void refuse() {
    shared_->stats.open++;
    shared_->stats.rejected++;
    reply(error_response(503, fmt::format("too many API connections (limit {}); retry later",
                                          shared_->limits.max_connections)),
          false);
  }

 private:
  void new_request() {
    parser_.emplace(shared_->limits.header_bytes, shared_->limits.body_bytes);
    arm_deadline();
  }

  void arm_deadline() {
    deadline_.expires_after(std::chrono::milliseconds(shared_->limits.request_timeout_ms));
    deadline_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
      if (ec || self->writing_ || !self->sock_.is_open()) return;  // cancelled, or answering already
      self->shared_->stats.timeouts++;
      self->reply(error_response(408, "request not complete within the API's deadline; connection closed"), false);
    });
  }

  void read() {
    if (writing_ || !sock_.is_open()) return;
    sock_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](const asio::error_code& ec, size_t n) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) {  // EOF or reset: the client went away
        if (!self->in_.empty() || self->parser_->got_some()) self->shared_->stats.client_gone++;
        self->close();
        return;
      }
      self->in_.append(self->buf_.data(), n);
      // While an answer is being written (the deadline's), the bytes wait: one write at a time.
      if (!self->writing_) self->feed();
    });
  }

  // Feeds buffered bytes to the parser; answers a complete request, or reads more.
  void feed() {
    switch (parser_->feed(in_)) {
      case RequestParser::State::kNeedMore:
        read();
        return;
      case RequestParser::State::kError:
        shared_->stats.malformed++;
        reply(error_response(parser_->error_status(), "malformed HTTP request: " + parser_->error_message()), false);
        return;
      case RequestParser::State::kDone:
        answer();
        return;
    }
  }

  void answer() {
    bool keep_alive = false;
    Request r = parser_->take(&keep_alive);
    shared_->stats.requests++;
    Response resp = shared_->closed ? error_response(503, "pinless is shutting down") : route(r, shared_->vm);
    reply(resp, keep_alive);
  }

  void reply(const Response& resp, bool keep_alive) {
    count_response(shared_->stats, resp.status);
    writing_ = true;
    deadline_.cancel();
    out_ = serialize(resp, keep_alive);
    asio::async_write(sock_, asio::buffer(out_), [self = shared_from_this(), keep_alive](const asio::error_code& ec, size_t) {
      self->writing_ = false;
      if (ec == asio::error::operation_aborted) return;
      if (ec || !keep_alive) {
        if (ec) self->shared_->stats.client_gone++;
        self->close();
        return;
      }
      self->new_request();
      self->feed();  // a pipelined request may be buffered already
    });
  }

  void close() {
    asio::error_code ignored;
    deadline_.cancel();
    sock_.shutdown(stream_protocol::socket::shutdown_both, ignored);
    sock_.close(ignored);
  }

  stream_protocol::socket sock_;
  asio::steady_timer deadline_;
  std::shared_ptr<ApiServer::Shared> shared_;
  std::optional<RequestParser> parser_;
  std::array<char, 4096> buf_{};
  std::string in_;
  std::string out_;
  bool writing_ = false;
};

void accept_next(const std::shared_ptr<ApiServer::Shared>& shared) {
  shared->acceptor.async_accept([shared](const asio::error_code& ec, stream_protocol::socket sock) {
    if (ec == asio::error::operation_aborted || shared->closed) return;
    if (ec) {
      // EMFILE and the like: keep serving the connections that exist; try again later.
      logger("api")->warn("API socket: accept: {}", ec.message());
    } else {
      auto conn = std::make_shared<Connection>(std::move(sock), shared);
      if (shared->stats.open >= shared->limits.max_connections) {
        conn->refuse();
      } else {
        conn->start();
      }
    }
    accept_next(shared);
  });
}

// A listening socket at `path`, mode 0600; see server.h for what an existing path means.
Result<UniqueFd> listen_at(const std::string& path, uint64_t* dev, uint64_t* ino) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return fail("--api-socket", EINVAL, path, fmt::format("the path must be 1..{} bytes", sizeof(addr.sun_path) - 1));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return fail("--api-socket", EEXIST, path, "it exists and is not a socket: remove it or choose another path");
    }
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!probe.valid()) return fail_errno("socket", "--api-socket " + path);
    if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      return fail("--api-socket", EADDRINUSE, path,
                  "another process is serving this socket (another pinless?): stop it or choose another path");
    }
    logger("api")->info("API socket {}: replacing a stale socket (nobody listens on it)", path);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return fail_errno("unlink", "--api-socket " + path);
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return fail_errno("socket", "--api-socket " + path);
  // 0600 from the start: no window in which another user could connect. (umask is process-
  // wide: create() runs before any other thread exists.)
  mode_t old = ::umask(0177);
  int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int bind_errno = errno;
  ::umask(old);
  if (rc != 0) {
    errno = bind_errno;
    return fail_errno("bind", "--api-socket " + path);
  }
  if (::listen(fd.get(), 64) != 0) {
    int e = errno;
    ::unlink(path.c_str());
    return fail("listen", e, "--api-socket " + path);
  }
  if (::stat(path.c_str(), &st) == 0) {
    *dev = st.st_dev;
    *ino = st.st_ino;
  }
  return fd;
}

}  // namespace

Json to_json(const ServerStats& s) {
  return Json{{"connections", s.connections}, {"open", s.open},
              {"requests", s.requests},       {"responses_2xx", s.responses_2xx},
              {"responses_4xx", s.responses_4xx}, {"responses_5xx", s.responses_5xx},
              {"malformed", s.malformed},     {"timeouts", s.timeouts},
              {"rejected", s.rejected},       {"client_gone", s.client_gone}};
}

Result<std::unique_ptr<ApiServer>> ApiServer::create(EventLoop& loop, const std::string& path, VmControl& vm,
                                                     ServerLimits limits) {
  uint64_t dev = 0, ino = 0;
  UniqueFd fd = PINLESS_TRY(listen_at(path, &dev, &ino));
  auto shared = std::make_shared<Shared>(loop.context(), vm, limits);
  asio::error_code ec;
  shared->acceptor.assign(stream_protocol(), fd.get(), ec);
  if (ec) {
    ::unlink(path.c_str());
    return fail("epoll_ctl", ec.value(), "--api-socket " + path);
  }
  (void)fd.release();  // the acceptor owns it now
  std::unique_ptr<ApiServer> server(new ApiServer(path, shared));
  server->dev_ = dev;
  server->ino_ = ino;
  accept_next(shared);
  logger("api")->info("API socket: {}", path);
  return server;
}

ApiServer::~ApiServer() {
  // Connections still open finish or die with the loop; no new ones, and none routed to a VM
  // that is going away.
  shared_->closed = true;
  asio::error_code ignored;
  shared_->acceptor.close(ignored);
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) ::unlink(path_.c_str());
}

ServerStats ApiServer::stats() const { return shared_->stats; }

}  // namespace pinless::vmm::api
