#include "pinless/base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>

namespace pinless {
namespace {
std::mutex g_mu;
spdlog::level::level_enum g_level = spdlog::level::warn;

// One stderr sink for every logger, made with the first: a sink asks whether stderr is a
// terminal (an ioctl) when it is made, which a logger first used on a vCPU thread, under its
// seccomp filter, must not do.
spdlog::sink_ptr stderr_sink() {
  static const spdlog::sink_ptr sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  return sink;
}
}  // namespace

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
  std::lock_guard lock(g_mu);
  if (auto l = spdlog::get(name)) return l;
  auto l = std::make_shared<spdlog::logger>(name, stderr_sink());
  spdlog::register_logger(l);
  l->set_pattern("pinless %n %l: %v");
  l->set_level(g_level);
  return l;
}

void set_log_level(const std::string& level) {
  std::lock_guard lock(g_mu);
  g_level = spdlog::level::from_str(level);
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { l->set_level(g_level); });
}

}  // namespace pinless
