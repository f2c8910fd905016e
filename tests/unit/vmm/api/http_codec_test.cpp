#include <doctest/doctest.h>

#include "pinless/vmm/api/http_codec.h"

using namespace pinless::vmm::api;
using State = RequestParser::State;

TEST_CASE("http codec: a request in pieces, then a pipelined second one") {
  RequestParser p(8192, 1024);
  std::string in = "PUT /api/v1/vm.shutdown HTTP/1.1\r\nHost: x\r\nContent-Le";
  CHECK(p.feed(in) == State::kNeedMore);
  CHECK(p.got_some());
  in += "ngth: 15\r\n\r\n{\"timeout_s\":5}GET /api/v1/vm.info HTTP/1.1\r\n\r\n";
  REQUIRE(p.feed(in) == State::kDone);
  bool keep = false;
  Request r = p.take(&keep);
  CHECK(r.method == "PUT");
  CHECK(r.target == "/api/v1/vm.shutdown");
  CHECK(r.body == "{\"timeout_s\":5}");
  CHECK(keep);  // HTTP/1.1 default
  CHECK(in == "GET /api/v1/vm.info HTTP/1.1\r\n\r\n");  // the next request stays buffered

  RequestParser q(8192, 1024);
  REQUIRE(q.feed(in) == State::kDone);
  r = q.take(&keep);
  CHECK(r.method == "GET");
  CHECK(r.body.empty());
  CHECK(in.empty());
}

TEST_CASE("http codec: Connection: close and HTTP/1.0 end the connection") {
  RequestParser p(8192, 1024);
  std::string in = "GET /api/v1/vm.info HTTP/1.1\r\nConnection: close\r\n\r\n";
  REQUIRE(p.feed(in) == State::kDone);
  bool keep = true;
  (void)p.take(&keep);
  CHECK_FALSE(keep);
  RequestParser q(8192, 1024);
  in = "GET /api/v1/vm.info HTTP/1.0\r\n\r\n";
  REQUIRE(q.feed(in) == State::kDone);
  keep = true;
  (void)q.take(&keep);
  CHECK_FALSE(keep);
}

TEST_CASE("http codec: malformed requests and limits get 400, 413 and 431") {
  struct Case {
    std::string in;
    int status;
  };
  for (const Case& c : {Case{"GARBAGE\r\n\r\n", 400}, Case{"GET /x HTTP/9.9\r\n\r\n", 400},
                        Case{"GET /x HTTP/1.1\r\nContent-Length: zz\r\n\r\n", 400},
                        Case{"PUT /x HTTP/1.1\r\nContent-Length: 2000\r\n\r\n", 413},
                        Case{"GET /x HTTP/1.1\r\nX: " + std::string(300, 'a') + "\r\n\r\n", 431}}) {
    CAPTURE(c.in.substr(0, 40));
    RequestParser p(256, 1024);
    std::string in = c.in;
    REQUIRE(p.feed(in) == State::kError);
    CHECK(p.error_status() == c.status);
    CHECK_FALSE(p.error_message().empty());
  }
}

TEST_CASE("http codec: responses carry status, JSON type, length, Allow and Connection") {
  std::string s = serialize(Response{405, R"({"error":"x"})", "GET"}, false);
  CHECK(s.rfind("HTTP/1.1 405 Method Not Allowed\r\n", 0) == 0);
  CHECK(s.find("Content-Type: application/json\r\n") != std::string::npos);
  CHECK(s.find("Allow: GET\r\n") != std::string::npos);
  CHECK(s.find("Connection: close\r\n") != std::string::npos);
  CHECK(s.find("Content-Length: 14\r\n") != std::string::npos);  // body plus its newline
  CHECK(s.substr(s.size() - 14) == "{\"error\":\"x\"}\n");
  std::string ok = serialize(Response{200, "{}", ""}, true);
  CHECK(ok.find("Connection: close") == std::string::npos);
  CHECK(ok.find("Allow") == std::string::npos);
}
