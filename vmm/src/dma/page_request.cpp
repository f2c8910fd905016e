#include "page_request.h"

namespace pinless::vmm {

bool has_ext_cap(const std::function<uint32_t(uint16_t)>& read32, uint16_t id) {
  uint16_t at = 0x100;
  // At most (4096 - 256) / 4 headers exist; more steps mean a loop.
  for (int steps = 0; steps < 960 && at >= 0x100 && at <= 0xffc; ++steps) {
    uint32_t h = read32(at);
    if (h == 0 || h == 0xffffffffu) return false;
    if ((h & 0xffff) == id) return true;
    uint16_t next = uint16_t((h >> 20) & 0xffc);
    if (next == 0 || next <= at) return false;  // end of list, or a pointer backwards (loop)
    at = next;
  }
  return false;
}

PageRequestSupport page_request_support(const std::function<uint32_t(uint16_t)>& read32) {
  if (!has_ext_cap(read32, kExtCapPri)) {
    return {false, "no PCIe Page Request Interface (PRI) capability"};
  }
  if (!has_ext_cap(read32, kExtCapAts)) {
    return {false, "PRI without Address Translation Services (ATS)"};
  }
  return {true, ""};
}

}  // namespace pinless::vmm
