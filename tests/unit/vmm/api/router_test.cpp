#include <doctest/doctest.h>

#include "pinless/vmm/api/router.h"
#include "unit/vmm/api/fake_vm_control.h"

using namespace pinless;
using namespace pinless::vmm::api;
using pinless::testing::FakeVmControl;

namespace {
Json body_of(const Response& r) {
  Json j = Json::parse(r.body, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  return j;
}
Response call(FakeVmControl& vm, const char* method, const char* target, std::string body = {}) {
  return route(Request{method, target, std::move(body)}, vm);
}
}  // namespace

TEST_CASE("api routes: GET endpoints answer with the VM's JSON") {
  FakeVmControl vm;
  auto info = call(vm, "GET", "/api/v1/vm.info");
  CHECK(info.status == 200);
  CHECK(body_of(info)["pid"] == 42);
  CHECK(body_of(call(vm, "GET", "/api/v1/vm.counters"))["vm_exits"]["total"] == 7);
  auto tl = call(vm, "GET", "/api/v1/vm.timeline?pretty=1");  // a query string is ignored
  CHECK(tl.status == 200);
  CHECK(body_of(tl)["events"][0]["name"] == "process_start");
  CHECK(vm.calls.empty());
}

TEST_CASE("api routes: actions call the VM once and answer with its state") {
  FakeVmControl vm;
  auto r = call(vm, "PUT", "/api/v1/vm.pause");
  CHECK(r.status == 200);
  CHECK(body_of(r)["state"] == "paused");
  CHECK(call(vm, "PUT", "/api/v1/vm.resume", "  {} ").status == 200);
  CHECK(call(vm, "PUT", "/api/v1/vm.stop").status == 200);
  CHECK(vm.calls == std::vector<std::string>{"pause", "resume", "stop"});
}

TEST_CASE("api routes: shutdown takes an optional timeout_s, checked") {
  FakeVmControl vm;
  CHECK(call(vm, "PUT", "/api/v1/vm.shutdown").status == 200);
  CHECK(vm.shutdown_timeout_ms == kDefaultShutdownTimeoutMs);
  CHECK(call(vm, "PUT", "/api/v1/vm.shutdown", R"({"timeout_s": 5})").status == 200);
  CHECK(vm.shutdown_timeout_ms == 5000);
  for (const char* bad : {R"({"timeout_s": 0})", R"({"timeout_s": -1})", R"({"timeout_s": 1.5})",
                          R"({"timeout_s": "5"})", R"({"timeout_s": 99999})", R"({"timeout": 5})", "[1]", "{"}) {
    CAPTURE(bad);
    auto r = call(vm, "PUT", "/api/v1/vm.shutdown", bad);
    CHECK(r.status == 400);
    CHECK(body_of(r)["error"].get<std::string>().size() > 10);
  }
  CHECK(vm.calls.size() == 2);  // the refused ones never reached the VM
}

TEST_CASE("api routes: unknown endpoints, wrong methods and bodies get JSON errors") {
  FakeVmControl vm;
  auto r = call(vm, "GET", "/api/v1/vm.nope");
  CHECK(r.status == 404);
  CHECK(body_of(r)["error"].get<std::string>().find("vm.info") != std::string::npos);  // lists endpoints
  CHECK(call(vm, "GET", "/").status == 404);
  CHECK(call(vm, "GET", "/api/v2/vm.info").status == 404);
  CHECK(call(vm, "GET", "").status == 404);
  r = call(vm, "POST", "/api/v1/vm.info");
  CHECK(r.status == 405);
  CHECK(r.allow == "GET");
  r = call(vm, "GET", "/api/v1/vm.pause");
  CHECK(r.status == 405);
  CHECK(r.allow == "PUT");
  CHECK(call(vm, "PUT", "/api/v1/vm.pause", "not json").status == 400);
  CHECK(call(vm, "PUT", "/api/v1/vm.pause", R"({"now": true})").status == 400);
  CHECK(vm.calls.empty());
}

TEST_CASE("api routes: VM errors map to HTTP statuses with the message") {
  FakeVmControl vm;
  vm.pause_result = fail("vm.pause", ETIMEDOUT, "not every vCPU left KVM_RUN");
  auto r = call(vm, "PUT", "/api/v1/vm.pause");
  CHECK(r.status == 504);
  CHECK(body_of(r)["error"].get<std::string>().find("KVM_RUN") != std::string::npos);
  CHECK(http_status_for(Error("x", EBUSY)) == 409);
  CHECK(http_status_for(Error("x", EALREADY)) == 409);
  CHECK(http_status_for(Error("x", EINVAL)) == 400);
  CHECK(http_status_for(Error("x", ENOTSUP)) == 501);
  CHECK(http_status_for(Error("x", EIO)) == 500);
}

TEST_CASE("api routes: vm.ram-region takes offset and dma, premap and/or window, checked") {
  FakeVmControl vm;
  auto r = call(vm, "PUT", "/api/v1/vm.ram-region", R"({"offset": "0x10000000", "premap": 16})");
  CHECK(r.status == 200);
  CHECK(vm.last_change.offset == 0x10000000);
  CHECK(vm.last_change.premap_pages == 16u);
  CHECK_FALSE(vm.last_change.window.has_value());
  CHECK(call(vm, "PUT", "/api/v1/vm.ram-region", R"({"offset": 4096, "window": "forward"})").status == 200);
  CHECK(vm.last_change.offset == 4096);
  CHECK(vm.last_change.window == std::optional<std::string>("forward"));
  CHECK(vm.calls.size() == 2);
  CHECK(call(vm, "PUT", "/api/v1/vm.ram-region", R"({"offset": 0, "dma": "pin"})").status == 200);
  CHECK(vm.last_change.dma == std::optional<std::string>("pin"));
  CHECK_FALSE(vm.last_change.premap_pages.has_value());
  CHECK(call(vm, "PUT", "/api/v1/vm.ram-region", R"({"offset": 0, "dma": "fault", "premap": 8})").status == 200);
  CHECK(vm.last_change.dma == std::optional<std::string>("fault"));
  CHECK(vm.last_change.premap_pages == 8u);
  CHECK(vm.calls.size() == 4);
  struct Bad {
    const char* body;
    int status;
  };
  for (const Bad& b : {Bad{R"({"premap": 16})", 400}, Bad{R"({"offset": 0})", 400},
                       Bad{R"({"offset": "12x", "premap": 1})", 400}, Bad{R"({"offset": "-1", "premap": 1})", 400},
                       Bad{R"({"offset": -1, "premap": 1})", 400}, Bad{R"({"offset": 0, "premap": 0})", 400},
                       Bad{R"({"offset": 0, "premap": 262145})", 400}, Bad{R"({"offset": 0, "window": "wide"})", 400},
                       Bad{R"({"offset": 0, "window": 3})", 400}, Bad{R"({"offset": 0, "size": 3})", 400},
                       Bad{R"({"offset": 0, "dma": "maybe"})", 400}, Bad{R"({"offset": 0, "dma": true})", 400},
                       Bad{R"({"offset": 0, "dma": "pin", "premap": 4})", 400},
                       Bad{R"({"offset": 0, "dma": "pin", "window": "aligned"})", 400}, Bad{"", 400}}) {
    CAPTURE(b.body);
    auto res = call(vm, "PUT", "/api/v1/vm.ram-region", b.body);
    CHECK(res.status == b.status);
    CHECK(body_of(res).contains("error"));
  }
  CHECK(vm.calls.size() == 4);  // none of the bad ones reached the VM
}

TEST_CASE("api routes: a target or body that is not UTF-8 still gets a JSON answer (fuzz reproducer)") {
  FakeVmControl vm;
  // scripts/fuzz's first find: the 404 message quoted the raw target, and the JSON writer threw.
  auto r = call(vm, "GET", "/no\xcc\xcc\xcc\xccpe");
  CHECK(r.status == 404);
  CHECK(body_of(r)["error"].get<std::string>().find("\xef\xbf\xbd") != std::string::npos);  // U+FFFD
  r = call(vm, "PUT", "/api/v1/vm.ram-region", "{\"offset\": \"\xff\", \"premap\": 1}");
  CHECK(r.status == 400);
  CHECK(body_of(r).contains("error"));
  r = call(vm, "\xc3\x28", "/api/v1/vm.info");
  CHECK(r.status == 405);
  CHECK(body_of(r).contains("error"));
}
