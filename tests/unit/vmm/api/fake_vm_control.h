// A VmControl that records what the API asked and answers with scripted results.
#pragma once

#include <string>
#include <vector>

#include "pinless/vmm/api/vm_control.h"

namespace pinless::testing {

struct FakeVmControl : vmm::api::VmControl {
  std::string state_text = "running";
  std::vector<std::string> calls;
  uint64_t shutdown_timeout_ms = 0;
  Status pause_result{};  // what pause() answers

  std::string state() const override { return state_text; }
  vmm::api::Json info() const override { return {{"pid", 42}, {"state", state_text}}; }
  vmm::api::Json counters() const override { return {{"vm_exits", {{"total", 7}}}}; }
  std::string timeline_json() const override { return R"({"events":[{"name":"process_start","t_us":0}]})"; }
  Status pause() override {
    calls.push_back("pause");
    if (pause_result) state_text = "paused";
    return pause_result;
  }
  Status resume() override {
    calls.push_back("resume");
    state_text = "running";
    return {};
  }
  Status shutdown(uint64_t timeout_ms) override {
    calls.push_back("shutdown");
    shutdown_timeout_ms = timeout_ms;
    state_text = "shutting down";
    return {};
  }
  RamRegionChange last_change;
  Status set_ram_region(const RamRegionChange& change) override {
    calls.push_back("ram-region");
    last_change = change;
    return {};
  }
  Status stop() override {
    calls.push_back("stop");
    state_text = "stopping";
    return {};
  }
};

}  // namespace pinless::testing
