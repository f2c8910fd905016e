#include "pinless/vmm/timeline/timeline.h"

#include <nlohmann/json.hpp>

#include "pinless/base/clock.h"

namespace pinless::vmm {

Timeline::PhaseScope::PhaseScope(Timeline* t, std::string name, Attrs attrs)
    : timeline_(t), name_(std::move(name)), attrs_(std::move(attrs)), start_us_(us_since_start()) {}

Timeline::PhaseScope::PhaseScope(PhaseScope&& o) noexcept
    : timeline_(std::exchange(o.timeline_, nullptr)),
      name_(std::move(o.name_)),
      attrs_(std::move(o.attrs_)),
      start_us_(o.start_us_) {}

void Timeline::PhaseScope::end() {
  if (timeline_ == nullptr) return;
  uint64_t now = us_since_start();
  timeline_->add_phase(std::move(name_), start_us_, now - start_us_, std::move(attrs_));
  timeline_ = nullptr;
}

Timeline::Timeline() { events_.push_back({"process_start", 0}); }

void Timeline::mark(std::string_view name) { mark_at(name, us_since_start()); }

void Timeline::mark_at(std::string_view name, uint64_t t_us) {
  std::lock_guard lock(mu_);
  events_.push_back({std::string(name), t_us});
}

bool Timeline::mark_once(std::string_view name) {
  uint64_t now = us_since_start();
  std::lock_guard lock(mu_);
  for (const auto& e : events_) {
    if (e.name == name) return false;
  }
  events_.push_back({std::string(name), now});
  return true;
}

Timeline::PhaseScope Timeline::phase(std::string name, Attrs attrs) {
  return PhaseScope(this, std::move(name), std::move(attrs));
}

void Timeline::add_phase(std::string name, uint64_t start_us, uint64_t duration_us, Attrs attrs) {
  std::lock_guard lock(mu_);
  phases_.push_back({std::move(name), start_us, duration_us, std::move(attrs)});
}

std::string Timeline::guest_marker_name(uint8_t value) {
  if (value == 0x01) return "guest_boot_complete";
  return "guest_marker_" + std::to_string(value);
}

void Timeline::guest_marker(uint8_t value) { mark_once(guest_marker_name(value)); }

std::vector<Timeline::Event> Timeline::events() const {
  std::lock_guard lock(mu_);
  return events_;
}

std::vector<Timeline::Phase> Timeline::phases() const {
  std::lock_guard lock(mu_);
  return phases_;
}

std::optional<uint64_t> Timeline::find(std::string_view name) const {
  std::lock_guard lock(mu_);
  for (const auto& e : events_) {
    if (e.name == name) return e.t_us;
  }
  return std::nullopt;
}

std::string Timeline::to_json() const {
  std::lock_guard lock(mu_);
  nlohmann::ordered_json doc;
  doc["schema"] = "pinless-timeline/1";
  doc["unit"] = "us";
  // CLOCK_MONOTONIC at t_us = 0, so external tools can line up their own clock readings.
  doc["start_monotonic_ns"] = process_start_ns();
  auto events = nlohmann::ordered_json::array();
  for (const auto& e : events_) {
    events.push_back({{"name", e.name}, {"t_us", e.t_us}});
  }
  doc["events"] = std::move(events);
  auto phases = nlohmann::ordered_json::array();
  for (const auto& p : phases_) {
    nlohmann::ordered_json j{{"name", p.name}, {"start_us", p.start_us}, {"duration_us", p.duration_us}};
    j["attrs"] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : p.attrs) j["attrs"][k] = v;
    phases.push_back(std::move(j));
  }
  doc["phases"] = std::move(phases);
  for (const auto& [key, json] : sections_) {
    doc[key] = nlohmann::ordered_json::parse(json, nullptr, /*allow_exceptions=*/false);
  }
  return doc.dump(2) + "\n";
}

void Timeline::set_section(std::string key, std::string json) {
  std::lock_guard lock(mu_);
  for (auto& [k, v] : sections_) {
    if (k == key) {
      v = std::move(json);
      return;
    }
  }
  sections_.emplace_back(std::move(key), std::move(json));
}

}  // namespace pinless::vmm
