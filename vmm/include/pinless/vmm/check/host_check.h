// The judgement of `pinless check`: from HostFacts to a list of PASS/WARN/FAIL items, each
// with what was seen and what to do, and one verdict: can pinless run guests at speed here?
// Only the KVM items can FAIL (no guest can run without them); the others WARN about a
// feature that will not work (passthrough, fault-driven DMA, huge pages). Pure functions;
// thread-safe.
#pragma once

#include <string>
#include <vector>

#include "pinless/vmm/check/host_facts.h"

namespace pinless::vmm::check {

// The guest/host rate of the probe's loop below which KVM counts as "not at speed". Hardware
// virtualisation runs guest instructions natively: measured 0.93-1.03x in the nested testbed
// (L2 vs L1). Emulation is orders of magnitude away (kvm_pvm: 1/7,400). 0.2 leaves a 5x margin
// for a busy or noisy host and is still 1,000x above the emulated case.
constexpr double kMinSpeedRatio = 0.2;

enum class Level { kPass, kWarn, kFail };
const char* level_name(Level level);

struct Item {
  std::string id;      // stable key for scripts: "kvm.speed", "iommu.iommufd", ...
  std::string title;   // short human name
  Level level = Level::kPass;
  std::string detail;  // what was seen
  std::string advice;  // what to do (empty when nothing needs doing)
};

struct Report {
  std::vector<Item> items;
  bool kvm_usable = false;  // pinless can run guests at speed here
  std::string summary;      // one line for scripts and people, e.g. why not
};

Report assess(const HostFacts& facts);
// Human-readable report, one item a line (advice indented below), verdict last.
std::string to_text(const Report& report);
// The report and the raw facts as one JSON object (docs/check.md).
std::string to_json(const Report& report, const HostFacts& facts);
// 0 when KVM is usable at speed, else 1.
inline int exit_code(const Report& report) { return report.kvm_usable ? 0 : 1; }

}  // namespace pinless::vmm::check
