// ApiServer: the control API on a Unix socket (docs/api.md), HTTP/1.1 with JSON bodies, one
// more event source on the main event loop: it never blocks a vCPU or the fault queue.
//
// HTTP is parsed by Boost.Beast's buffer-oriented parser (header only, from libboost-dev) fed
// from standalone-Asio sockets, the event loop's own (Beast's stream types need Boost.Asio,
// which would be a second event loop). Limits, each answered with an HTTP error and a JSON
// {"error": ...} body before the connection closes: headers over 8 KiB (431), bodies over
// 64 KiB (413), malformed requests (400), a request not complete within 10 s of its first
// byte or of the connection (408; a slow or half-open client), more than 32 connections at
// once (503). A client that disconnects mid-request or mid-response just goes away.
//
// The socket: created 0600 (a umask around bind(); call create() before any other thread
// exists, as run.cpp does), refused if the path exists and something answers on it, or is not
// a socket; a stale socket (nothing listening) is replaced. Removed when the server is
// destroyed, unless the path was replaced meanwhile. Event-loop thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "pinless/base/result.h"
#include "pinless/vmm/api/vm_control.h"
#include "pinless/vmm/event_loop.h"

namespace pinless::vmm::api {

struct ServerLimits {
  size_t header_bytes = 8 * 1024;
  size_t body_bytes = 64 * 1024;
  uint64_t request_timeout_ms = 10'000;
  unsigned max_connections = 32;
};

struct ServerStats {
  uint64_t connections = 0;          // accepted, in total
  uint64_t open = 0;                 // now
  uint64_t requests = 0;             // complete requests routed
  uint64_t responses_2xx = 0;
  uint64_t responses_4xx = 0;        // includes malformed requests and timeouts
  uint64_t responses_5xx = 0;        // includes connections refused over the limit
  uint64_t malformed = 0;            // requests the parser refused (400, 413, 431)
  uint64_t timeouts = 0;             // connections closed by the request deadline
  uint64_t rejected = 0;             // connections over max_connections
  uint64_t client_gone = 0;          // connections the client closed mid-request or mid-reply
};
Json to_json(const ServerStats& s);

class ApiServer {
 public:
  [[nodiscard]] static Result<std::unique_ptr<ApiServer>> create(EventLoop& loop, const std::string& path,
                                                                 VmControl& vm, ServerLimits limits = {});
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  const std::string& path() const { return path_; }
  ServerStats stats() const;

  struct Shared;

 private:
  ApiServer(std::string path, std::shared_ptr<Shared> shared) : path_(std::move(path)), shared_(std::move(shared)) {}
  std::string path_;
  std::shared_ptr<Shared> shared_;
  uint64_t dev_ = 0, ino_ = 0;  // the socket file we created, to remove only ours
};

}  // namespace pinless::vmm::api
