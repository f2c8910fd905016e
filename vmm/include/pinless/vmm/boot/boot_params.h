// The zero page (struct boot_params at 0x7000) and what it points to: the kernel command
// line at 0x20000, the initrd (placed high in low RAM) and the E820 map derived from
// layout.h. Pure functions except the final writes into GuestMemory; thread-safe.
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pinless/base/result.h"
#include "pinless/base/types.h"
#include "pinless/vmm/boot/kernel_loader.h"
#include "pinless/vmm/layout.h"
#include "pinless/vmm/memory/guest_memory.h"

namespace pinless::vmm::boot {

constexpr uint8_t kTypeOfLoaderUndefined = 0xff;
constexpr uint64_t kInitrdAlign = 2 * kMiB;

// The E820 map: 0..0x9fc00 RAM, EBDA reserved, 0xe0000..0xfffff reserved (ACPI tables),
// 1 MiB..end of low RAM, ECAM reserved, high RAM.
std::vector<boot_e820_entry> build_e820(const layout::MemoryLayout& layout);

// Highest kInitrdAlign-aligned address where `size` bytes fit below
// min(initrd_addr_max + 1, end of low RAM) and above the kernel.
[[nodiscard]] Result<Range<Gpa>> place_initrd(uint64_t size, const LoadedKernel& kernel,
                                              const layout::MemoryLayout& layout);

// Rejects command lines the kernel would truncate or that contain NUL bytes.
[[nodiscard]] Status check_cmdline(const std::string& cmdline, const LoadedKernel& kernel);

struct BootParamsInput {
  std::string cmdline;
  std::optional<Range<Gpa>> initrd;
  Gpa rsdp;  // 0 = none
};

// The zero page contents (setup header copied from the kernel, our fields filled in).
[[nodiscard]] Result<boot_params> build_boot_params(const LoadedKernel& kernel,
                                                    const layout::MemoryLayout& layout,
                                                    const BootParamsInput& in);

// build_boot_params + writing it to kZeroPage and the command line to kCmdline.
[[nodiscard]] Status write_boot_params(const GuestMemory& mem, const LoadedKernel& kernel,
                                       const BootParamsInput& in);

}  // namespace pinless::vmm::boot
