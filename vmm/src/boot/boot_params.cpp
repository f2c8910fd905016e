#include "pinless/vmm/boot/boot_params.h"

#include <asm/e820.h>

#include <cstring>

#include "pinless/base/size.h"

namespace pinless::vmm::boot {
namespace {
boot_e820_entry e820(uint64_t addr, uint64_t size, uint32_t type) {
  boot_e820_entry e{};
  e.addr = addr;
  e.size = size;
  e.type = type;
  return e;
}

// The kernel's limit on the command line length, excluding the NUL.
uint64_t cmdline_limit(const LoadedKernel& kernel) {
  uint64_t limit = kernel.header.cmdline_size != 0 ? kernel.header.cmdline_size : 255;
  return std::min<uint64_t>(limit, layout::kCmdlineMax - 1);
}
}  // namespace

std::vector<boot_e820_entry> build_e820(const layout::MemoryLayout& l) {
  const uint64_t ebda = layout::kEbdaStart.value();
  std::vector<boot_e820_entry> map;
  map.push_back(e820(0, ebda, E820_RAM));
  map.push_back(e820(ebda, layout::kIsaHoleStart.value() - ebda, E820_RESERVED));
  map.push_back(e820(layout::kAcpiTables.value(), layout::kAcpiTablesMax, E820_RESERVED));
  const uint64_t himem = layout::kHighMemStart.value();
  if (l.low_ram.end().value() > himem) {
    map.push_back(e820(himem, l.low_ram.end().value() - himem, E820_RAM));
  }
  // Linux only trusts MMCONFIG (ECAM) space that the firmware reserved.
  map.push_back(e820(l.ecam.start.value(), l.ecam.size, E820_RESERVED));
  if (l.high_ram.size != 0) {
    map.push_back(e820(l.high_ram.start.value(), l.high_ram.size, E820_RAM));
  }
  return map;
}

Result<Range<Gpa>> place_initrd(uint64_t size, const LoadedKernel& kernel,
                                const layout::MemoryLayout& l) {
  uint64_t max_end = std::min<uint64_t>(uint64_t(kernel.header.initrd_addr_max) + 1,
                                        l.low_ram.end().value());
  uint64_t floor = align_up(kernel.reserved_end.value(), kPageSize);
  if (size == 0) return fail("initrd", EINVAL, "the initrd is empty");
  if (size > max_end || align_down(max_end - size, kInitrdAlign) < floor) {
    return fail("initrd", ENOMEM,
                "initrd of " + format_size(size) + " does not fit between the kernel's end at " +
                    format_hex(floor) + " and " + format_hex(max_end),
                "use a smaller initrd or give the guest more memory with --memory size=...");
  }
  return Range<Gpa>{Gpa(align_down(max_end - size, kInitrdAlign)), size};
}

Status check_cmdline(const std::string& cmdline, const LoadedKernel& kernel) {
  if (cmdline.find('\0') != std::string::npos) {
    return fail("kernel command line", EINVAL, "contains a NUL byte");
  }
  uint64_t limit = cmdline_limit(kernel);
  if (cmdline.size() > limit) {
    return fail("kernel command line", E2BIG,
                std::to_string(cmdline.size()) + " bytes, the kernel accepts at most " +
                    std::to_string(limit),
                "shorten --cmdline");
  }
  return {};
}

Result<boot_params> build_boot_params(const LoadedKernel& kernel, const layout::MemoryLayout& l,
                                      const BootParamsInput& in) {
  PINLESS_TRY_VOID(check_cmdline(in.cmdline, kernel));
  boot_params bp;
  std::memset(&bp, 0, sizeof(bp));
  // Only the bytes the kernel defines; the rest of hdr stays zero.
  std::memcpy(&bp.hdr, &kernel.header, std::min(kernel.header_len, sizeof(setup_header)));
  bp.hdr.type_of_loader = kTypeOfLoaderUndefined;
  bp.hdr.vid_mode = 0xffff;  // "normal"
  bp.hdr.loadflags |= CAN_USE_HEAP;
  bp.hdr.heap_end_ptr = 0xfe00;
  bp.hdr.cmd_line_ptr = uint32_t(layout::kCmdline.value());
  bp.ext_cmd_line_ptr = 0;
  bp.hdr.setup_data = 0;
  // The ramdisk fields are the boot loader's to write, whatever the file holds: without an
  // initrd they must say none, or the kernel looks for one where the image claims it is.
  bp.hdr.ramdisk_image = 0;
  bp.hdr.ramdisk_size = 0;
  if (in.initrd) {
    uint64_t addr = in.initrd->start.value();
    uint64_t size = in.initrd->size;
    bp.hdr.ramdisk_image = uint32_t(addr);
    bp.ext_ramdisk_image = uint32_t(addr >> 32);
    bp.hdr.ramdisk_size = uint32_t(size);
    bp.ext_ramdisk_size = uint32_t(size >> 32);
  }
  auto map = build_e820(l);
  if (map.size() > E820_MAX_ENTRIES_ZEROPAGE) return fail("E820", E2BIG, "too many entries");
  bp.e820_entries = uint8_t(map.size());
  std::memcpy(bp.e820_table, map.data(), map.size() * sizeof(boot_e820_entry));
  bp.acpi_rsdp_addr = in.rsdp.value();
  return bp;
}

Status write_boot_params(const GuestMemory& mem, const LoadedKernel& kernel,
                         const BootParamsInput& in) {
  boot_params bp = PINLESS_TRY(build_boot_params(kernel, mem.layout(), in));
  PINLESS_TRY_VOID(mem.write_obj(layout::kZeroPage, bp));
  PINLESS_TRY_VOID(mem.zero(layout::kCmdline, cmdline_limit(kernel) + 1));
  return mem.write(layout::kCmdline,
                   std::span(reinterpret_cast<const uint8_t*>(in.cmdline.data()), in.cmdline.size()));
}

}  // namespace pinless::vmm::boot
