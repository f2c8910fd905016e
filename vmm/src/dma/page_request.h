// Can a PCI function send page requests (and so raise I/O page faults)? PCIe devices do it
// through the Page Request Interface (PRI), which needs Address Translation Services (ATS).
// Both are found with pci::find_ext_capability() over a read function (bounded against loops
// and bad pointers); unit-tested.
#pragma once

#include <string>

#include "pinless/pci/capabilities.h"

namespace pinless::vmm {

struct PageRequestSupport {
  bool can_fault = false;
  std::string why_not;  // for messages when !can_fault
};
// read32(offset) returns the dword at a 4-aligned config offset (0xffffffff when unreadable).
PageRequestSupport page_request_support(const pci::ConfigRead32& read32);

}  // namespace pinless::vmm
