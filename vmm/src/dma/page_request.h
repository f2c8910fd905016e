// Can a PCI function send page requests (and so raise I/O page faults)? PCIe devices do it
// through the Page Request Interface (PRI, extended capability 0x13), which needs ATS (0x0f).
// Pure walk of the extended capability list (config space 0x100..0xfff) over a read function,
// bounded against loops and bad pointers; unit-tested.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace pinless::vmm {

constexpr uint16_t kExtCapAts = 0x0f;
constexpr uint16_t kExtCapPri = 0x13;

// read32(offset) returns the dword at a 4-aligned config offset (0xffffffff when unreadable).
bool has_ext_cap(const std::function<uint32_t(uint16_t)>& read32, uint16_t id);

struct PageRequestSupport {
  bool can_fault = false;
  std::string why_not;  // for messages when !can_fault
};
PageRequestSupport page_request_support(const std::function<uint32_t(uint16_t)>& read32);

}  // namespace pinless::vmm
