// The control API's HTTP/1.1 grammar, from Boost.Beast's buffer-oriented parser and
// serializer. Kept apart from the sockets (server.cpp): Beast brings Boost.Asio's headers,
// which cannot share a translation unit with the standalone Asio of the event loop.
// Thread-compatible.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "pinless/vmm/api/router.h"

namespace pinless::vmm::api {

class RequestParser {
 public:
  enum class State { kNeedMore, kDone, kError };

  RequestParser(size_t header_limit, size_t body_limit);
  ~RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Parses from the front of `in`, erasing what it used. kDone: take() the request (bytes of
  // a pipelined next request stay in `in`). kError: error_status() and error_message() say why.
  State feed(std::string& in);
  // After kDone.
  Request take(bool* keep_alive);
  // Whether any byte of a request arrived.
  bool got_some() const;
  int error_status() const { return error_status_; }
  const std::string& error_message() const { return error_message_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int error_status_ = 0;
  std::string error_message_;
};

// The response as bytes: status line, Server, Content-Type: application/json, Allow (405),
// Connection, Content-Length, and the body (with a final newline).
std::string serialize(const Response& response, bool keep_alive);

}  // namespace pinless::vmm::api
