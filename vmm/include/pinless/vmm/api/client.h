// The client side of the control API: one HTTP/1.1 request over the Unix socket, the
// response parsed with Boost.Beast (`pinless ctl` and the tests use it). Blocking, with a
// deadline on the whole exchange. Thread-compatible.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "pinless/base/result.h"

namespace pinless::vmm::api {

struct ClientReply {
  int status = 0;
  std::string body;
};

[[nodiscard]] Result<ClientReply> call(const std::string& socket_path, std::string_view method, std::string_view target,
                                       std::string_view body = {},
                                       std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace pinless::vmm::api
