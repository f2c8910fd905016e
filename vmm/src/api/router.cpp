#include "pinless/vmm/api/router.h"

#include <array>
#include <expected>
#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>

#include "pinless/iommu/dma_policy.h"

namespace pinless::vmm::api {
namespace {

enum class Method { kGet, kPut };

struct Endpoint {
  std::string_view name;
  Method method;
};

constexpr std::array<Endpoint, 8> kEndpoints{{
    {"vm.info", Method::kGet},
    {"vm.counters", Method::kGet},
    {"vm.timeline", Method::kGet},
    {"vm.pause", Method::kPut},
    {"vm.resume", Method::kPut},
    {"vm.shutdown", Method::kPut},
    {"vm.stop", Method::kPut},
    {"vm.ram-region", Method::kPut},
}};

std::string endpoint_list() {
  std::string out;
  for (const auto& e : kEndpoints) {
    out += (out.empty() ? "" : ", ");
    out += fmt::format("{} {}", e.method == Method::kGet ? "GET" : "PUT", e.name);
  }
  return out;
}

// JSON text that never throws: strings that are not UTF-8 (a request target, a path from the
// command line) get U+FFFD where the bytes are invalid. nlohmann's default throws, and an
// exception out of an Asio handler would end pinless (found by scripts/fuzz).
std::string text(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

Response json_response(int status, const Json& body) { return Response{status, text(body), {}}; }

Response from_status(const Status& st, VmControl& vm) {
  if (!st) return error_response(http_status_for(st.error()), st.error().message());
  return json_response(200, Json{{"state", vm.state()}});
}

// An action's body: empty, or a JSON object (whose members the action may read). Otherwise
// the error message.
std::expected<Json, std::string> action_body(const Request& r) {
  if (r.body.find_first_not_of(" \t\r\n") == std::string::npos) return Json::object();
  Json j = Json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::unexpected("the request body is not valid JSON");
  if (!j.is_object()) return std::unexpected("the request body must be a JSON object");
  return j;
}

Response shutdown(const Request& r, VmControl& vm) {
  auto body = action_body(r);
  if (!body) return error_response(400, body.error());
  uint64_t timeout_ms = kDefaultShutdownTimeoutMs;
  for (const auto& [key, value] : body->items()) {
    if (key != "timeout_s") return error_response(400, fmt::format("vm.shutdown: unknown member \"{}\" (takes timeout_s)", key));
    if (!value.is_number_unsigned() || value.get<uint64_t>() == 0 ||
        value.get<uint64_t>() > kMaxShutdownTimeoutMs / 1000) {
      return error_response(400, fmt::format("vm.shutdown: timeout_s must be a whole number of seconds, 1..{}",
                                             kMaxShutdownTimeoutMs / 1000));
    }
    timeout_ms = value.get<uint64_t>() * 1000;
  }
  return from_status(vm.shutdown(timeout_ms), vm);
}

// {"offset": N or "0x...", "dma": "pin"|"fault", "premap": N, "window": "aligned"|"forward"|"hint"}.
Response ram_region(const Request& r, VmControl& vm) {
  auto body = action_body(r);
  if (!body) return error_response(400, body.error());
  VmControl::RamRegionChange change;
  bool have_offset = false;
  for (const auto& [key, value] : body->items()) {
    if (key == "offset") {
      if (value.is_number_unsigned()) {
        change.offset = value.get<uint64_t>();
      } else if (value.is_string()) {
        const std::string& s = value.get_ref<const std::string&>();
        char* end = nullptr;
        errno = 0;
        change.offset = std::strtoull(s.c_str(), &end, 0);
        if (s.empty() || *end != '\0' || errno != 0 || s[0] == '-') {
          return error_response(400, fmt::format("vm.ram-region: offset \"{}\" is not a number (e.g. 268435456 or \"0x10000000\")", s));
        }
      } else {
        return error_response(400, "vm.ram-region: offset must be a number or a \"0x...\" string");
      }
      have_offset = true;
    } else if (key == "premap") {
      if (!value.is_number_unsigned() || value.get<uint64_t>() == 0 || value.get<uint64_t>() > iommu::kMaxPremapPages) {
        return error_response(400, fmt::format("vm.ram-region: premap must be a whole number of pages, 1..{}",
                                               iommu::kMaxPremapPages));
      }
      change.premap_pages = value.get<uint64_t>();
    } else if (key == "window") {
      if (!value.is_string() || !iommu::parse_window_policy(value.get<std::string>())) {
        return error_response(400, "vm.ram-region: window must be \"aligned\", \"forward\" or \"hint\"");
      }
      change.window = value.get<std::string>();
    } else if (key == "dma") {
      if (!value.is_string() || (value.get<std::string>() != "pin" && value.get<std::string>() != "fault")) {
        return error_response(400, "vm.ram-region: dma must be \"pin\" or \"fault\"");
      }
      change.dma = value.get<std::string>();
    } else {
      return error_response(400,
                            fmt::format("vm.ram-region: unknown member \"{}\" (takes offset, dma, premap, window)", key));
    }
  }
  if (!have_offset) return error_response(400, "vm.ram-region: offset (the region's start in guest RAM) is required");
  if (!change.dma && !change.premap_pages && !change.window) {
    return error_response(400, "vm.ram-region: give dma, premap and/or window");
  }
  if (change.dma == "pin" && (change.premap_pages || change.window)) {
    return error_response(400, "vm.ram-region: premap and window apply to dma \"fault\" only");
  }
  return from_status(vm.set_ram_region(change), vm);
}

Response no_body_action(const Request& r, std::string_view name, VmControl& vm, Status (VmControl::*fn)()) {
  auto body = action_body(r);
  if (!body) return error_response(400, body.error());
  if (!body->empty()) return error_response(400, fmt::format("{} takes no parameters", name));
  return from_status((vm.*fn)(), vm);
}

}  // namespace

Response error_response(int status, std::string_view message) {
  return Response{status, text(Json{{"error", message}}), {}};
}

int http_status_for(const Error& e) {
  switch (e.err()) {
    case EINVAL: return 400;
    case EBUSY:
    case EALREADY:
    case ENOSPC: return 409;
    case ENOTSUP: return 501;
    case ETIMEDOUT: return 504;
    default: return 500;
  }
}

Response route(const Request& request, VmControl& vm) {
  std::string_view target = request.target;
  if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  if (!target.starts_with(kApiPrefix)) {
    return error_response(404, fmt::format("unknown endpoint {}: the API lives under {} ({})", target, kApiPrefix,
                                           endpoint_list()));
  }
  std::string_view name = target.substr(kApiPrefix.size());
  const Endpoint* ep = nullptr;
  for (const auto& e : kEndpoints) {
    if (e.name == name) ep = &e;
  }
  if (ep == nullptr) {
    return error_response(404, fmt::format("unknown endpoint {} (endpoints: {})", target, endpoint_list()));
  }
  const char* want = ep->method == Method::kGet ? "GET" : "PUT";
  if (request.method != want) {
    Response r = error_response(405, fmt::format("{} takes {}, not {}", name, want, request.method));
    r.allow = want;
    return r;
  }
  if (name == "vm.info") return json_response(200, vm.info());
  if (name == "vm.counters") return json_response(200, vm.counters());
  if (name == "vm.timeline") return Response{200, vm.timeline_json(), {}};
  if (name == "vm.pause") return no_body_action(request, name, vm, &VmControl::pause);
  if (name == "vm.resume") return no_body_action(request, name, vm, &VmControl::resume);
  if (name == "vm.stop") return no_body_action(request, name, vm, &VmControl::stop);
  if (name == "vm.shutdown") return shutdown(request, vm);
  return ram_region(request, vm);
}

}  // namespace pinless::vmm::api
