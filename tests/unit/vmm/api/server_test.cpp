#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <future>
#include <string>
#include <thread>

#include <asio/post.hpp>
#include <asio/io_context.hpp>

#include "pinless/base/fd.h"
#include "pinless/vmm/api/client.h"
#include "pinless/vmm/api/server.h"
#include "unit/vmm/api/fake_vm_control.h"

using namespace pinless;
using namespace pinless::vmm;
using namespace pinless::vmm::api;
using pinless::testing::FakeVmControl;

namespace {

std::string temp_socket_path() {
  char dir[] = "/tmp/pinless-api-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  return std::string(dir) + "/api.sock";
}

// A connected raw client, for requests curl would never send.
UniqueFd raw_connect(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
  REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  return fd;
}

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, size_t(n));
  }
  return out;
}

// The server on a loop thread; stopped and joined (and the server destroyed) at the end.
struct Running {
  FakeVmControl vm;
  EventLoop loop;
  std::unique_ptr<ApiServer> server;
  std::thread thread;
  std::string path = temp_socket_path();
  explicit Running(ServerLimits limits = {}) {
    auto s = ApiServer::create(loop, path, vm, limits);
    REQUIRE(s.has_value());
    server = std::move(*s);
    thread = std::thread([this] { loop.run(); });
  }
  // The server's counters, read on the loop thread (where the server keeps them) while it runs.
  ServerStats stats() {
    std::promise<ServerStats> got;
    asio::post(loop.context(), [&] { got.set_value(server->stats()); });
    return got.get_future().get();
  }
  ~Running() {
    loop.stop();
    thread.join();
    std::string dir = path.substr(0, path.rfind('/'));
    server.reset();
    ::rmdir(dir.c_str());
  }
};

}  // namespace

TEST_CASE("api server: requests over the socket reach the router; the socket is 0600 and removed") {
  std::string path;
  {
    Running r;
    path = r.path;
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0600);
    auto info = call(path, "GET", "/api/v1/vm.info");
    REQUIRE(info.has_value());
    CHECK(info->status == 200);
    CHECK(info->body.find("\"pid\":42") != std::string::npos);
    auto pause = call(path, "PUT", "/api/v1/vm.pause");
    REQUIRE(pause.has_value());
    CHECK(pause->status == 200);
    auto bad = call(path, "PUT", "/api/v1/vm.pause", "{oops");
    REQUIRE(bad.has_value());
    CHECK(bad->status == 400);
    CHECK(bad->body.find("\"error\"") != std::string::npos);
  }
  struct stat st {};
  CHECK(::stat(path.c_str(), &st) != 0);  // removed with the server
}

TEST_CASE("api server: keep-alive, pipelining, and garbage get answers in order") {
  Running r;
  UniqueFd fd = raw_connect(r.path);
  std::string two = "GET /api/v1/vm.info HTTP/1.1\r\n\r\nGET /api/v1/vm.counters HTTP/1.1\r\nConnection: close\r\n\r\n";
  REQUIRE(::write(fd.get(), two.data(), two.size()) == ssize_t(two.size()));
  std::string got = read_all(fd.get());
  auto first = got.find("\"pid\":42");
  auto second = got.find("\"total\":7");
  CHECK(first != std::string::npos);
  CHECK(second != std::string::npos);
  CHECK(first < second);

  UniqueFd g = raw_connect(r.path);
  std::string garbage = "\x16\x03\x01 not http at all\r\n\r\n";
  REQUIRE(::write(g.get(), garbage.data(), garbage.size()) == ssize_t(garbage.size()));
  std::string answer = read_all(g.get());
  CHECK(answer.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(answer.find("malformed HTTP request") != std::string::npos);
  CHECK(r.stats().malformed == 1);
}

TEST_CASE("api server: a slow client gets 408, an extra one 503, a vanished one is forgotten") {
  ServerLimits limits;
  limits.request_timeout_ms = 200;
  limits.max_connections = 2;
  Running r(limits);
  UniqueFd slow = raw_connect(r.path);
  REQUIRE(::write(slow.get(), "GET /api/v1/vm.in", 17) == 17);  // and then nothing
  UniqueFd idle = raw_connect(r.path);                          // says nothing at all
  UniqueFd extra = raw_connect(r.path);
  std::string refused = read_all(extra.get());
  CHECK(refused.rfind("HTTP/1.1 503", 0) == 0);
  CHECK(read_all(slow.get()).rfind("HTTP/1.1 408", 0) == 0);
  CHECK(read_all(idle.get()).rfind("HTTP/1.1 408", 0) == 0);
  {
    UniqueFd gone = raw_connect(r.path);
    REQUIRE(::write(gone.get(), "PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: 100\r\n\r\n{", 56) == 56);
  }  // closed mid-body
  // The server still answers, and counted each case.
  auto info = call(r.path, "GET", "/api/v1/vm.info");
  REQUIRE(info.has_value());
  CHECK(info->status == 200);
  ServerStats s = r.stats();
  CHECK(s.rejected == 1);
  CHECK(s.timeouts == 2);
  CHECK(s.client_gone == 1);
  CHECK(r.vm.calls.empty());  // the half-sent pause never reached the VM
}

TEST_CASE("api server: a live socket path is refused, a stale one replaced, a file kept") {
  Running live;
  EventLoop loop;
  FakeVmControl vm;
  auto second = ApiServer::create(loop, live.path, vm);
  REQUIRE_FALSE(second.has_value());
  CHECK(second.error().message().find("another process") != std::string::npos);

  std::string stale = temp_socket_path();
  {
    UniqueFd s(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, stale.c_str(), sizeof(a.sun_path) - 1);
    REQUIRE(::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  }  // closed without unlink: a stale socket file
  auto replaced = ApiServer::create(loop, stale, vm);
  CHECK(replaced.has_value());
  replaced = std::unexpected(Error("done", 0));  // destroys the server: removes its socket
  ::rmdir(stale.substr(0, stale.rfind('/')).c_str());

  std::string file = temp_socket_path();
  std::ofstream(file) << "not a socket";
  auto refused = ApiServer::create(loop, file, vm);
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().message().find("not a socket") != std::string::npos);
  CHECK(::unlink(file.c_str()) == 0);  // left alone
  ::rmdir(file.substr(0, file.rfind('/')).c_str());
}

TEST_CASE("api client: a missing socket says what to check") {
  auto r = call("/tmp/pinless-no-such-dir/api.sock", "GET", "/api/v1/vm.info");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message().find("is pinless running with --api-socket") != std::string::npos);
}
