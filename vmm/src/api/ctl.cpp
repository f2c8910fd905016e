#include "pinless/vmm/api/ctl.h"

#include <cstdio>
#include <fmt/format.h>

#include "pinless/base/size.h"
#include "pinless/vmm/api/client.h"
#include "pinless/vmm/api/router.h"

namespace pinless::vmm::api {
namespace {

uint64_t u64(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

// j[key], or an empty (null) value when j is not an object or has no such member; never a
// copy, so that loops over the result see live values.
const Json& member(const Json& j, const char* key) {
  static const Json kNone;
  if (!j.is_object()) return kNone;
  auto it = j.find(key);
  return it == j.end() ? kNone : *it;
}

// Elements of j[key] when it is an array (else none).
const Json& elements(const Json& j, const char* key) {
  static const Json kEmpty = Json::array();
  const Json& m = member(j, key);
  return m.is_array() ? m : kEmpty;
}

std::string str(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "-";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

}  // namespace

std::string format_info(const Json& info) {
  std::string out;
  const Json& c = member(info, "config");
  out += fmt::format("state     {} (pid {})\n", str(info, "state"), str(info, "pid"));
  out += fmt::format("vcpus     {}\n", str(info, "vcpus"));
  if (c.contains("memory")) {
    const Json& m = member(c, "memory");
    out += fmt::format("memory    {} (hugepages {}, thp {})\n", format_size(u64(m, "size")),
                       member(m, "hugepages") == true ? "on" : "off", member(m, "thp") == true ? "on" : "off");
  }
  out += fmt::format("kernel    {}\n", str(c, "kernel"));
  out += fmt::format("initrd    {}\n", str(c, "initrd"));
  out += fmt::format("cmdline   {}\n", str(c, "cmdline"));
  for (const auto& r : elements(info, "dma_regions")) {
    out += fmt::format("dma       {} +{}: {}{}, pinned {}\n", str(r, "gpa"), format_size(u64(r, "size")), str(r, "dma"),
                       r.contains("premap") ? fmt::format(" (premap {} pages, window {})", str(r, "premap"), str(r, "window")) : "",
                       format_size(u64(r, "pinned_bytes")));
  }
  for (const auto& d : elements(info, "devices")) {
    if (d.contains("kind")) {
      out += fmt::format("device    {} {}\n", str(d, "bdf"), str(d, "kind"));
    } else {
      out += fmt::format("device    {} vfio {} (backend {}, domain {})\n", str(d, "bdf"), str(d, "host"), str(d, "backend"),
                         str(d, "domain"));
    }
  }
  return out;
}

std::string format_counters(const Json& c) {
  std::string out = fmt::format("state     {}\n", str(c, "state"));
  if (const Json& e = member(c, "vm_exits"); e.is_object()) {
    std::string reasons;
    const Json& by_reason = member(e, "by_reason");
    for (auto it = by_reason.begin(); by_reason.is_object() && it != by_reason.end(); ++it) {
      const std::string& k = it.key();
      const Json& v = it.value();
      reasons += fmt::format("{}{} {}", reasons.empty() ? "" : ", ", k, v.dump());
    }
    out += fmt::format("vm exits  {} ({}); KVM_RUN interrupted {}\n", u64(e, "total"), reasons,
                       u64(e, "kvm_run_interrupted"));
  }
  if (const Json& d = member(c, "dma"); d.is_object()) {
    const Json& f = member(d, "faults");
    out += fmt::format("dma       {}: pinned {} (peak {}); fault groups {} ({} INVALID), pages mapped {}, reclaimed {}; "
                       "{} policy switches\n",
                       str(d, "backend"), format_size(u64(d, "pinned_bytes")), format_size(u64(d, "pinned_peak_bytes")),
                       u64(f, "groups"), u64(f, "invalid_groups"), u64(f, "pages_mapped"), u64(f, "pages_reclaimed"),
                       u64(d, "policy_switches"));
    for (const auto& r : elements(d, "regions")) {
      std::string how = str(r, "dma");
      if (how == "fault") how += fmt::format(" (premap {} {})", u64(r, "premap"), str(r, "window"));
      out += fmt::format("  region  {} +{} {}: pinned {} in {} mappings; {} faults ({} INVALID), {} reclaims; "
                         "{} maps ({} us), {} unmaps ({} us)\n",
                         str(r, "gpa"), format_size(u64(r, "size")), how, format_size(u64(r, "pinned_bytes")),
                         u64(r, "mappings"), u64(r, "faults"), u64(r, "invalid"), u64(r, "reclaims"), u64(r, "map_calls"),
                         u64(r, "map_us"), u64(r, "unmap_calls"), u64(r, "unmap_us"));
    }
    for (const auto& dev : elements(d, "devices")) {
      out += fmt::format("  device  {}: faults {} in {} groups, mapped {}, INVALID {}\n", str(dev, "name"),
                         u64(dev, "faults"), u64(dev, "groups"), format_size(u64(dev, "bytes_mapped")),
                         u64(dev, "invalid"));
    }
  }
  if (const Json& v = member(c, "viommu"); v.is_object()) {
    const Json& r = member(v, "requests");
    const Json& h = member(v, "host");
    out += fmt::format("viommu    requests: attach {}, detach {}, map {}, unmap {}, probe {}; {} domains, {} mappings; "
                       "host: {} IOAS copies ({} us), {} unmaps ({} us), {} mapped\n",
                       u64(r, "attach"), u64(r, "detach"), u64(r, "map"), u64(r, "unmap"), u64(r, "probe"),
                       u64(v, "domains"), u64(v, "mappings"), u64(h, "ioas_copies"), u64(h, "copy_us"),
                       u64(h, "ioas_unmaps"), u64(h, "unmap_us"), format_size(u64(h, "mapped_bytes")));
  }
  if (const Json& a = member(c, "api"); a.is_object()) {
    out += fmt::format("api       {} requests (2xx {}, 4xx {}, 5xx {}); {} connections, {} open; malformed {}, "
                       "timeouts {}, rejected {}, client gone {}\n",
                       u64(a, "requests"), u64(a, "responses_2xx"), u64(a, "responses_4xx"), u64(a, "responses_5xx"),
                       u64(a, "connections"), u64(a, "open"), u64(a, "malformed"), u64(a, "timeouts"), u64(a, "rejected"),
                       u64(a, "client_gone"));
  }
  return out;
}

std::string format_timeline(const Json& t) {
  std::string out;
  for (const auto& e : elements(t, "events")) {
    out += fmt::format("{:>10.1f} ms  {}\n", double(u64(e, "t_us")) / 1000.0, str(e, "name"));
  }
  for (const auto& p : elements(t, "phases")) {
    out += fmt::format("{:>10.1f} ms  {} ({:.1f} ms)\n", double(u64(p, "start_us")) / 1000.0, str(p, "name"),
                       double(u64(p, "duration_us")) / 1000.0);
  }
  return out;
}

int run_ctl(const CtlConfig& config) {
  const bool get = config.command == "info" || config.command == "counters" || config.command == "timeline";
  std::string body;
  if (config.command == "shutdown" && config.timeout_s != 0) body = Json{{"timeout_s", config.timeout_s}}.dump();
  if (config.command == "ram-region") {
    Json j{{"offset", std::stoull(config.offset)}};
    if (!config.dma.empty()) j["dma"] = config.dma;
    if (config.premap != 0) j["premap"] = config.premap;
    if (!config.window.empty()) j["window"] = config.window;
    body = j.dump();
  }
  // A shutdown answers at once; pause waits for the vCPUs (about a second at most).
  auto reply = call(config.api_socket, get ? "GET" : "PUT", std::string(kApiPrefix) + "vm." + config.command, body);
  if (!reply) {
    std::fprintf(stderr, "pinless ctl: %s\n", reply.error().message().c_str());
    return 1;
  }
  Json j = Json::parse(reply->body, nullptr, false);
  if (reply->status < 200 || reply->status >= 300) {
    std::string why = j.is_object() && j.contains("error") ? j["error"].get<std::string>() : reply->body;
    std::fprintf(stderr, "pinless ctl: %s: HTTP %d: %s\n", config.command.c_str(), reply->status, why.c_str());
    return 1;
  }
  if (config.json || j.is_discarded()) {
    std::fputs(reply->body.c_str(), stdout);
    if (!reply->body.empty() && reply->body.back() != '\n') std::fputc('\n', stdout);
    return 0;
  }
  std::string text = config.command == "info"       ? format_info(j)
                     : config.command == "counters" ? format_counters(j)
                     : config.command == "timeline" ? format_timeline(j)
                                                    : fmt::format("{}: done; the VM is {}\n", config.command, str(j, "state"));
  std::fputs(text.c_str(), stdout);
  return 0;
}

}  // namespace pinless::vmm::api
