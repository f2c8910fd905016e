#include "pinless/base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>

namespace pinless {
namespace {
std::mutex g_mu;
spdlog::level::level_enum g_level = spdlog::level::warn;
}  // namespace

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
  std::lock_guard lock(g_mu);
  if (auto l = spdlog::get(name)) return l;
  auto l = spdlog::stderr_color_mt(name);
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
