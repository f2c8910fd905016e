// Timeline: the startup timeline of one pinless process. Named events ("memory_ready") and
// phases with a duration and string attributes ("pin_region", {"gpa": "0x100000"}), all
// timestamped in microseconds since process start (base/clock.h). Serialised as JSON (schema
// in docs/timeline.md). Thread-safe: vCPU threads record guest markers while the main thread
// records phases.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pinless::vmm {

class Timeline {
 public:
  using Attrs = std::map<std::string, std::string>;

  struct Event {
    std::string name;
    uint64_t t_us = 0;
  };
  struct Phase {
    std::string name;
    uint64_t start_us = 0;
    uint64_t duration_us = 0;
    Attrs attrs;
  };

  // Ends a phase when it goes out of scope: `auto p = timeline.phase("pin_region", {...});`
  class [[nodiscard]] PhaseScope {
   public:
    PhaseScope(Timeline* t, std::string name, Attrs attrs);
    PhaseScope(PhaseScope&& o) noexcept;
    PhaseScope& operator=(PhaseScope&&) = delete;
    PhaseScope(const PhaseScope&) = delete;
    ~PhaseScope() { end(); }
    // Adds an attribute known only at the end (e.g. bytes pinned).
    void attr(std::string key, std::string value) { attrs_[std::move(key)] = std::move(value); }
    // Records the phase now (idempotent).
    void end();

   private:
    Timeline* timeline_;
    std::string name_;
    Attrs attrs_;
    uint64_t start_us_;
  };

  // Records `process_start` at t=0.
  Timeline();

  // Records an event now. Repeated names are all kept.
  void mark(std::string_view name);
  // Records an event now unless one with this name exists; returns whether it recorded.
  bool mark_once(std::string_view name);
  // Records an event at an explicit time (tests, events measured elsewhere).
  void mark_at(std::string_view name, uint64_t t_us);
  // Starts a phase that ends when the returned scope is destroyed.
  PhaseScope phase(std::string name, Attrs attrs = {});
  // Records a phase measured elsewhere.
  void add_phase(std::string name, uint64_t start_us, uint64_t duration_us, Attrs attrs = {});

  // Guest debug-port marker (docs/guest-abi.md): 0x01 -> guest_boot_complete, N -> guest_marker_N.
  // Only the first occurrence of each value is kept.
  void guest_marker(uint8_t value);
  static std::string guest_marker_name(uint8_t value);

  std::vector<Event> events() const;
  std::vector<Phase> phases() const;
  std::optional<uint64_t> find(std::string_view name) const;
  // A top-level section of the JSON document beside events and phases (e.g. "dma"), given
  // as JSON text; set again to replace it.
  void set_section(std::string key, std::string json);
  // JSON document, see docs/timeline.md.
  std::string to_json() const;

 private:
  mutable std::mutex mu_;
  std::vector<Event> events_;
  std::vector<Phase> phases_;
  std::vector<std::pair<std::string, std::string>> sections_;
};

}  // namespace pinless::vmm
