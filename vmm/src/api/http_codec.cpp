#include "pinless/vmm/api/http_codec.h"

#include <optional>
#include <sstream>

#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "beast_feed.h"

namespace pinless::vmm::api {

namespace http = boost::beast::http;

struct RequestParser::Impl {
  http::request_parser<http::string_body> parser;
};

RequestParser::RequestParser(size_t header_limit, size_t body_limit) : impl_(std::make_unique<Impl>()) {
  impl_->parser.header_limit(std::uint32_t(header_limit));
  impl_->parser.body_limit(body_limit);
  impl_->parser.eager(true);
}

RequestParser::~RequestParser() = default;

RequestParser::State RequestParser::feed(std::string& in) {
  if (auto ec = beast_feed(impl_->parser, in)) {
    error_status_ = ec == http::error::header_limit ? 431 : ec == http::error::body_limit ? 413 : 400;
    error_message_ = ec.message();
    return State::kError;
  }
  return impl_->parser.is_done() ? State::kDone : State::kNeedMore;
}

Request RequestParser::take(bool* keep_alive) {
  auto req = impl_->parser.release();
  *keep_alive = req.keep_alive();
  return Request{std::string(req.method_string()), std::string(req.target()), std::move(req.body())};
}

bool RequestParser::got_some() const { return impl_->parser.got_some(); }

std::string serialize(const Response& r, bool keep_alive) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), 11};
  res.set(http::field::server, "pinless");
  res.set(http::field::content_type, "application/json");
  if (!r.allow.empty()) res.set(http::field::allow, r.allow);
  res.keep_alive(keep_alive);
  res.body() = r.body;
  if (!res.body().empty() && res.body().back() != '\n') res.body() += '\n';
  res.prepare_payload();
  std::ostringstream os;
  os << res;
  return os.str();
}

}  // namespace pinless::vmm::api
