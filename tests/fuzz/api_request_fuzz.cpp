// libFuzzer target: bytes from a control-API client, as the server sees them. The input is cut
// into chunks (sizes from its first bytes, as a network would deliver them) and fed to the
// HTTP parser; every request it completes is routed against a VM that accepts everything,
// and its answer is written out. Checked on every input: no crash, no sanitizer report, each
// answer's body is a JSON object (an error one for every status >= 400), and its status is one
// the API documents (docs/api.md). Built and run by scripts/fuzz.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>

#include "pinless/vmm/api/http_codec.h"
#include "pinless/vmm/api/router.h"

using namespace pinless;
using namespace pinless::vmm::api;

namespace {

struct AcceptingVm final : VmControl {
  std::string state() const override { return "running"; }
  Json info() const override { return {{"pid", 1}}; }
  Json counters() const override { return {{"vm_exits", {{"total", 0}}}}; }
  std::string timeline_json() const override { return R"({"events":[]})"; }
  Status pause() override { return {}; }
  Status resume() override { return {}; }
  Status shutdown(uint64_t) override { return {}; }
  Status stop() override { return {}; }
  Status set_ram_region(const RamRegionChange&) override { return {}; }
};

void check_answer(const Response& r) {
  static const std::set<int> kDocumented = {200, 400, 404, 405, 409, 413, 431, 501, 503, 504};
  if (!kDocumented.count(r.status)) std::abort();
  Json body = Json::parse(r.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) std::abort();
  if (r.status >= 400 && (!body.contains("error") || !body["error"].is_string())) std::abort();
  if (r.status == 405 && r.allow.empty()) std::abort();
  (void)serialize(r, true);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static AcceptingVm vm;
  // The first byte picks the chunk size (1..64 bytes, or all at once).
  size_t chunk = size == 0 ? 1 : (data[0] % 65 == 0 ? size : data[0] % 65);
  std::string in;
  RequestParser parser(8 * 1024, 64 * 1024);
  auto* p = &parser;
  std::unique_ptr<RequestParser> next;
  for (size_t off = size == 0 ? 0 : 1; off < size; off += chunk) {
    in.append(reinterpret_cast<const char*>(data) + off, std::min(chunk, size - off));
    for (;;) {
      auto st = p->feed(in);
      if (st == RequestParser::State::kNeedMore) break;
      if (st == RequestParser::State::kError) {
        check_answer(error_response(p->error_status(), "malformed HTTP request: " + p->error_message()));
        return 0;  // the server closes the connection here
      }
      bool keep_alive = false;
      Request req = p->take(&keep_alive);
      check_answer(route(req, vm));
      if (!keep_alive) return 0;
      next = std::make_unique<RequestParser>(8 * 1024, 64 * 1024);
      p = next.get();
    }
  }
  return 0;
}
