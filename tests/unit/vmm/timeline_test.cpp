#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <thread>
#include <vector>

#include "pinless/vmm/timeline/timeline.h"

using pinless::vmm::Timeline;

TEST_CASE("timeline starts with process_start at 0 and keeps events in order") {
  Timeline t;
  t.mark_at("config_parsed", 10);
  t.mark_at("memory_ready", 20);
  auto ev = t.events();
  REQUIRE(ev.size() == 3);
  CHECK(ev[0].name == "process_start");
  CHECK(ev[0].t_us == 0);
  CHECK(ev[1].name == "config_parsed");
  CHECK(ev[2].t_us == 20);
  CHECK(t.find("memory_ready") == 20u);
  CHECK_FALSE(t.find("nope").has_value());
}

TEST_CASE("guest markers: 0x01 is boot complete, others numbered, first occurrence kept") {
  CHECK(Timeline::guest_marker_name(1) == "guest_boot_complete");
  CHECK(Timeline::guest_marker_name(2) == "guest_marker_2");
  CHECK(Timeline::guest_marker_name(0x7f) == "guest_marker_127");
  Timeline t;
  t.guest_marker(1);
  auto first = t.find("guest_boot_complete");
  t.guest_marker(1);
  t.guest_marker(5);
  int boots = 0;
  for (const auto& e : t.events()) boots += e.name == "guest_boot_complete";
  CHECK(boots == 1);
  CHECK(t.find("guest_boot_complete") == first);
  CHECK(t.find("guest_marker_5").has_value());
}

TEST_CASE("a phase scope records once, with attributes added at the end") {
  Timeline t;
  {
    auto p = t.phase("pin_region", {{"gpa", "0x100000"}});
    p.attr("bytes", "4096");
    p.end();
    p.end();
  }
  auto ph = t.phases();
  REQUIRE(ph.size() == 1);
  CHECK(ph[0].name == "pin_region");
  CHECK(ph[0].attrs.at("gpa") == "0x100000");
  CHECK(ph[0].attrs.at("bytes") == "4096");
  { auto moved = [&] { return t.phase("device_reset"); }(); }
  CHECK(t.phases().size() == 2);
}

TEST_CASE("timeline JSON follows docs/timeline.md") {
  Timeline t;
  t.mark_at("kernel_loaded", 123);
  t.add_phase("bar_map", 5, 7, {{"bar", "0"}});
  auto doc = nlohmann::json::parse(t.to_json());
  CHECK(doc["schema"] == "pinless-timeline/1");
  CHECK(doc["unit"] == "us");
  CHECK(doc["start_monotonic_ns"].is_number_unsigned());
  CHECK(doc["events"][0]["name"] == "process_start");
  CHECK(doc["events"][1]["name"] == "kernel_loaded");
  CHECK(doc["events"][1]["t_us"] == 123);
  CHECK(doc["phases"][0]["name"] == "bar_map");
  CHECK(doc["phases"][0]["start_us"] == 5);
  CHECK(doc["phases"][0]["duration_us"] == 7);
  CHECK(doc["phases"][0]["attrs"]["bar"] == "0");
}

TEST_CASE("timeline accepts markers from several threads") {
  Timeline t;
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&t, i] {
      for (int j = 0; j < 100; ++j) t.guest_marker(uint8_t(2 + (i * 100 + j) % 100));
    });
  }
  for (auto& th : threads) th.join();
  CHECK(t.events().size() == 1 + 100);  // process_start + each distinct marker once
}

TEST_CASE("timeline: sections sit beside events and phases, and can be replaced") {
  Timeline t;
  t.set_section("dma", R"({"pinned_bytes": 1})");
  t.set_section("dma", R"({"pinned_bytes": 2})");
  auto doc = nlohmann::json::parse(t.to_json());
  CHECK(doc["dma"]["pinned_bytes"] == 2);
  CHECK(doc.contains("events"));
}
