#include "pinless/iommu/dma_policy.h"

#include <cerrno>

namespace pinless::iommu {

Result<WindowPolicy> parse_window_policy(const std::string& text) {
  if (text == "forward") return WindowPolicy::kForward;
  if (text == "aligned") return WindowPolicy::kAligned;
  if (text == "hint") return WindowPolicy::kHint;
  return fail("window policy", EINVAL, text, "expected forward, aligned or hint");
}

const char* window_policy_name(WindowPolicy p) {
  switch (p) {
    case WindowPolicy::kForward: return "forward";
    case WindowPolicy::kAligned: return "aligned";
    case WindowPolicy::kHint: return "hint";
  }
  return "?";
}

}  // namespace pinless::iommu
