#pragma once
namespace pinless::vmm {
// "pinless X.Y.Z" (from the CMake project version).
const char* version_string();
}  // namespace pinless::vmm
