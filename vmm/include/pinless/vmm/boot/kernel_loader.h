// Kernel loaders for the Linux x86 64-bit boot protocol: bzImage (setup header checked,
// protected-mode part copied to 1 MiB, 64-bit entry at load address + 0x200) and uncompressed
// ELF vmlinux (PT_LOAD segments by physical address). Both only parse bytes given to them
// (the file is mmap()ed by MappedFile) and write into GuestMemory through its bounds checks:
// a malformed image is an error, never an out-of-bounds write. Pure apart from those writes;
// thread-compatible.
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <span>
#include <string>

#include "pinless/base/fd.h"
#include "pinless/base/result.h"
#include "pinless/base/types.h"
#include "pinless/vmm/memory/guest_memory.h"

namespace pinless::vmm::boot {

constexpr uint16_t kMinBootProtocol = 0x020c;  // 2.12: xloadflags (XLF_KERNEL_64)
constexpr uint32_t kHdrSMagic = 0x53726448;     // "HdrS"
constexpr uint64_t kSetupHeaderOffset = 0x1f1;
constexpr uint64_t kEntry64Offset = 0x200;

// What a loader leaves behind for boot_params and the vCPU.
struct LoadedKernel {
  enum class Format { kBzImage, kElf };
  Format format = Format::kBzImage;
  Gpa entry;             // 64-bit entry point (guest-physical)
  Range<Gpa> image;      // bytes the loader wrote
  Gpa reserved_end;      // end of what the kernel occupies while booting (incl. init_size)
  // bzImage: the kernel's setup header as found in the file, valid for `header_len` bytes
  // (the rest is zero). ELF: a synthesised header.
  setup_header header{};
  size_t header_len = 0;
};

// The parsed setup header of a bzImage, validated.
struct BzImageInfo {
  setup_header header{};
  size_t header_len = 0;     // bytes of the header the kernel defines (0x202 + byte at 0x201 - 0x1f1)
  uint64_t setup_size = 0;   // real-mode part: (setup_sects + 1) * 512
  uint64_t payload_size = 0; // protected-mode kernel bytes
  Gpa load_address;          // 1 MiB when relocatable, pref_address otherwise
};

[[nodiscard]] Result<BzImageInfo> parse_bzimage(std::span<const uint8_t> image);
[[nodiscard]] Result<LoadedKernel> load_bzimage(std::span<const uint8_t> image, const GuestMemory& mem);
[[nodiscard]] Result<LoadedKernel> load_elf(std::span<const uint8_t> image, const GuestMemory& mem);
bool is_elf(std::span<const uint8_t> image);
// ELF or bzImage, by magic; anything else is "not a bzImage or ELF vmlinux".
[[nodiscard]] Result<LoadedKernel> load_kernel(std::span<const uint8_t> image, const GuestMemory& mem);

// A read-only, private mmap of a whole file (kernel, initrd). Owns the mapping.
// Thread-compatible.
class MappedFile {
 public:
  // `what` names the file in errors ("kernel", "initrd").
  [[nodiscard]] static Result<MappedFile> open(const std::string& path, const std::string& what);
  std::span<const uint8_t> bytes() const {
    return {static_cast<const uint8_t*>(map_.get()), size_};
  }
  uint64_t size() const { return size_; }

 private:
  MappedFile(MappedMemory map, uint64_t size) : map_(std::move(map)), size_(size) {}
  MappedMemory map_;
  uint64_t size_ = 0;
};

}  // namespace pinless::vmm::boot
