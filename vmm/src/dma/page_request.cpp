#include "page_request.h"

namespace pinless::vmm {

PageRequestSupport page_request_support(const pci::ConfigRead32& read32) {
  if (!pci::find_ext_capability(read32, pci::kExtCapPri)) {
    return {false, "no PCIe Page Request Interface (PRI) capability"};
  }
  if (!pci::find_ext_capability(read32, pci::kExtCapAts)) {
    return {false, "PRI without Address Translation Services (ATS)"};
  }
  return {true, ""};
}

}  // namespace pinless::vmm
