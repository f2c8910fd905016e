#include <cstddef>
#include <cstring>

#include "pinless/base/log.h"
#include "pinless/base/size.h"
#include "pinless/vmm/boot/kernel_loader.h"
#include "pinless/vmm/layout.h"

namespace pinless::vmm::boot {
namespace {
auto not_bzimage(const std::string& why) {
  return fail("kernel", EINVAL, "not a bzImage: " + why,
              "pass a bzImage (arch/x86/boot/bzImage) or an uncompressed ELF vmlinux");
}
}  // namespace

Result<BzImageInfo> parse_bzimage(std::span<const uint8_t> image) {
  BzImageInfo info;
  if (image.size() < kSetupHeaderOffset + sizeof(setup_header)) {
    return not_bzimage("file too small (" + std::to_string(image.size()) + " bytes)");
  }
  std::memcpy(&info.header, image.data() + kSetupHeaderOffset, sizeof(setup_header));
  const setup_header& h = info.header;
  if (h.header != kHdrSMagic) return not_bzimage("no \"HdrS\" signature at 0x202");
  if (h.version < kMinBootProtocol) {
    char v[16];
    std::snprintf(v, sizeof(v), "%u.%02u", h.version >> 8, h.version & 0xff);
    return fail("kernel", EINVAL, std::string("boot protocol ") + v + " is too old",
                "pinless needs boot protocol 2.12 or newer (Linux 3.8+)");
  }
  if ((h.xloadflags & XLF_KERNEL_64) == 0) {
    return fail("kernel", EINVAL, "bzImage has no 64-bit entry point (XLF_KERNEL_64 not set)",
                "build an x86_64 kernel");
  }
  // The header's length is self-described: it ends at 0x202 + the jump offset byte at 0x201.
  uint64_t header_end = 0x202 + uint64_t(image[0x201]);
  // A 2.12 header reaches past init_size, which sizes the kernel's footprint in RAM; a header
  // that says it ends before would leave it zero (and the initrd free to go where the kernel
  // decompresses itself).
  constexpr uint64_t kInitSizeEnd = kSetupHeaderOffset + offsetof(setup_header, init_size) + sizeof(uint32_t);
  if (header_end < kInitSizeEnd) {
    return not_bzimage("the setup header ends at " + format_hex(header_end) + ", before init_size at " +
                       format_hex(kInitSizeEnd - sizeof(uint32_t)));
  }
  info.header_len = std::min<uint64_t>(header_end, kSetupHeaderOffset + sizeof(setup_header)) -
                    kSetupHeaderOffset;
  if (info.header_len < sizeof(setup_header)) {
    // Fields past the kernel's own header are code, not header: clear them.
    std::memset(reinterpret_cast<uint8_t*>(&info.header) + info.header_len, 0,
                sizeof(setup_header) - info.header_len);
  }
  uint64_t setup_sects = h.setup_sects == 0 ? 4 : h.setup_sects;
  info.setup_size = (setup_sects + 1) * 512;
  if (image.size() <= info.setup_size) {
    return not_bzimage("no protected-mode kernel after " + std::to_string(setup_sects) +
                       " setup sectors");
  }
  info.payload_size = image.size() - info.setup_size;
  // The vCPU starts at the 64-bit entry, 0x200 into the protected-mode part: it must be there.
  if (info.payload_size <= kEntry64Offset) {
    return not_bzimage("the protected-mode kernel (" + std::to_string(info.payload_size) +
                       " bytes) ends before its 64-bit entry point at +0x200");
  }
  if (info.header.kernel_alignment == 0 ||
      (info.header.kernel_alignment & (info.header.kernel_alignment - 1)) != 0) {
    return not_bzimage("kernel_alignment " + format_hex(info.header.kernel_alignment) +
                       " is not a power of two");
  }
  // A relocatable kernel moves itself from 1 MiB to an aligned address >= pref_address; a
  // fixed one must be loaded at pref_address.
  info.load_address = info.header.relocatable_kernel ? layout::kHighMemStart
                                                     : Gpa(info.header.pref_address);
  return info;
}

Result<LoadedKernel> load_bzimage(std::span<const uint8_t> image, const GuestMemory& mem) {
  BzImageInfo info = PINLESS_TRY(parse_bzimage(image));
  const uint64_t low_end = mem.layout().low_ram.end().value();
  const uint64_t load = info.load_address.value();
  // While booting, the kernel decompresses to max(align_up(load, kernel_alignment),
  // pref_address) and needs init_size bytes from there. pref_address comes from the file:
  // near 2^64 the ends would wrap to small, valid-looking values, so they saturate instead
  // (align_up wrapping to 0 is harmless: max() then picks pref_address, the load address).
  auto end_of = [](uint64_t base, uint64_t len) { return base > UINT64_MAX - len ? UINT64_MAX : base + len; };
  uint64_t run_base = std::max<uint64_t>(align_up(load, info.header.kernel_alignment), uint64_t(info.header.pref_address));
  uint64_t reserved_end = std::max(end_of(load, info.payload_size), end_of(run_base, info.header.init_size));
  if (load < layout::kHighMemStart.value() || reserved_end > low_end) {
    return fail("kernel", ENOMEM,
                "kernel needs guest RAM up to " + format_hex(reserved_end) + " (load at " + format_hex(load) +
                    ", init_size " + format_size(info.header.init_size) + ") but low RAM ends at " +
                    format_hex(low_end),
                "give the guest more memory with --memory size=...");
  }
  PINLESS_TRY_VOID(mem.write(Gpa(load), image.subspan(info.setup_size)));
  LoadedKernel k;
  k.format = LoadedKernel::Format::kBzImage;
  k.entry = Gpa(load + kEntry64Offset);
  k.image = {Gpa(load), info.payload_size};
  k.reserved_end = Gpa(reserved_end);
  k.header = info.header;
  k.header_len = info.header_len;
  logger("boot")->info("bzImage: protocol {}.{:02}, {} loaded at {:#x}, entry {:#x}",
                       info.header.version >> 8, info.header.version & 0xff,
                       format_size(info.payload_size), load, k.entry.value());
  return k;
}

Result<LoadedKernel> load_kernel(std::span<const uint8_t> image, const GuestMemory& mem) {
  if (is_elf(image)) return load_elf(image, mem);
  return load_bzimage(image, mem);
}

}  // namespace pinless::vmm::boot
