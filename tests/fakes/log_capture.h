// Collects what one pinless logger writes while the capture lives, so tests can check that a
// warning names its cause and its fix. Adds a sink to the logger and removes it again.
// Thread-compatible: the logger must not be written from other threads while the capture
// is being created or destroyed.
#pragma once

#include <spdlog/sinks/ostream_sink.h>

#include <algorithm>
#include <memory>
#include <sstream>
#include <string>

#include "pinless/base/log.h"

namespace pinless::testing {

class LogCapture {
 public:
  explicit LogCapture(const std::string& name)
      : logger_(pinless::logger(name)), sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
    sink_->set_pattern("%l: %v");
    logger_->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = logger_->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

}  // namespace pinless::testing
