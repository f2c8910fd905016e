#include "pinless/vmm/version.h"

#ifndef PINLESS_VERSION_TEXT
#define PINLESS_VERSION_TEXT "0.0.0"
#endif

namespace pinless::vmm {
const char* version_string() { return "pinless " PINLESS_VERSION_TEXT; }
}  // namespace pinless::vmm
