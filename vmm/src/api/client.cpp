#include "pinless/vmm/api/client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <fmt/format.h>

#include "pinless/base/fd.h"
#include "beast_feed.h"

namespace pinless::vmm::api {
namespace {

namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;

// Waits until `fd` is ready for `events` or the deadline passes.
Status wait_ready(int fd, short events, Clock::time_point deadline, const std::string& what) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return fail(what, ETIMEDOUT, "no answer in time", "is the VM's event loop stuck? see its log");
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, int(left));
    if (n > 0) return {};
    if (n < 0 && errno != EINTR) return fail_errno("poll", what);
  }
}

}  // namespace

Result<ClientReply> call(const std::string& socket_path, std::string_view method, std::string_view target,
                         std::string_view body, std::chrono::milliseconds timeout) {
  const std::string what = "API socket " + socket_path;
  const auto deadline = Clock::now() + timeout;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path)) {
    return fail("connect", EINVAL, what, "the path is too long for a Unix socket");
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fail_errno("socket", what);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int e = errno;
    std::string hint = e == ENOENT       ? "no such socket: is pinless running with --api-socket at this path?"
                       : e == ECONNREFUSED ? "nothing listens there any more: the pinless that made it has exited"
                       : e == EACCES       ? "the socket is mode 0600: run as the user that started pinless"
                                           : "";
    return fail("connect", e, what, hint);
  }
  std::string request = fmt::format("{} {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n", method, target);
  if (!body.empty()) request += "Content-Type: application/json\r\n";
  request += fmt::format("Content-Length: {}\r\n\r\n", body.size());
  request += body;
  for (size_t off = 0; off < request.size();) {
    PINLESS_TRY_VOID(wait_ready(fd.get(), POLLOUT, deadline, what));
    ssize_t n = ::send(fd.get(), request.data() + off, request.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN && errno != EINTR) return fail_errno("send", what);
    if (n > 0) off += size_t(n);
  }
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  parser.eager(true);
  std::string in;
  char buf[16384];
  while (!parser.is_done()) {
    PINLESS_TRY_VOID(wait_ready(fd.get(), POLLIN, deadline, what));
    ssize_t n = ::recv(fd.get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0) return fail_errno("recv", what);
    boost::beast::error_code ec;
    if (n == 0) {
      parser.put_eof(ec);
      if (ec || !parser.is_done()) return fail("recv", EPROTO, what, "the connection closed before a complete answer");
      break;
    }
    in.append(buf, size_t(n));
    if (auto fed = beast_feed(parser, in)) return fail("HTTP response", EPROTO, what, fed.message());
  }
  auto res = parser.release();
  return ClientReply{int(res.result_int()), std::move(res.body())};
}

}  // namespace pinless::vmm::api
