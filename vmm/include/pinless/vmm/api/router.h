// The control API's routes (docs/api.md): one HTTP request, already parsed, to one response
// with a JSON body. No sockets and no HTTP parsing here (server.h does those), so every route
// and every error is unit-tested with a fake VmControl. Thread-compatible; called on the
// event-loop thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "pinless/vmm/api/vm_control.h"

namespace pinless::vmm::api {

inline constexpr std::string_view kApiPrefix = "/api/v1/";
inline constexpr uint64_t kDefaultShutdownTimeoutMs = 30'000;
inline constexpr uint64_t kMaxShutdownTimeoutMs = 3'600'000;

struct Request {
  std::string method;  // "GET", "PUT", ...
  std::string target;  // "/api/v1/vm.info" (a query string is ignored)
  std::string body;
};

struct Response {
  int status = 200;
  std::string body;   // JSON text (always: errors are {"error": "..."})
  std::string allow;  // 405: the methods the endpoint takes
};

// Every response body for an error: {"error": message}.
Response error_response(int status, std::string_view message);

Response route(const Request& request, VmControl& vm);

// The HTTP status for a VmControl error (see vm_control.h).
int http_status_for(const Error& e);

}  // namespace pinless::vmm::api
