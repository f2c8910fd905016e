// Feeds buffered bytes to a Boost.Beast HTTP parser (request or response): the server's
// RequestParser and `pinless ctl`'s client share it. Beast-only translation units include it
// (Beast needs Boost.Asio, which cannot share a unit with standalone Asio: docs/api.md).
#pragma once

#include <string>

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>

namespace pinless::vmm::api {

// Puts `in` into `parser` until it is done, needs more bytes or fails; what it consumed is
// erased from `in`. Returns the error, with http::error::need_more cleared (the caller reads
// more and calls again).
template <class Parser>
boost::beast::error_code beast_feed(Parser& parser, std::string& in) {
  boost::beast::error_code ec;
  while (!in.empty() && !parser.is_done()) {
    size_t used = parser.put(boost::asio::buffer(in.data(), in.size()), ec);
    in.erase(0, used);
    if (ec == boost::beast::http::error::need_more) return {};
    if (ec) return ec;
  }
  return {};
}

}  // namespace pinless::vmm::api
