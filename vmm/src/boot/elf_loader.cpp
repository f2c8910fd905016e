#include <elf.h>

#include <cstring>
#include <optional>

#include "pinless/base/log.h"
#include "pinless/base/size.h"
#include "pinless/vmm/boot/kernel_loader.h"
#include "pinless/vmm/layout.h"

namespace pinless::vmm::boot {
namespace {
auto bad_elf(const std::string& why) {
  return fail("kernel", EINVAL, "bad ELF vmlinux: " + why,
              "pass an uncompressed x86_64 vmlinux or a bzImage");
}

// The header the kernel would find in a bzImage, for an ELF kernel that has none.
setup_header synthesized_header() {
  setup_header h{};
  h.boot_flag = 0xaa55;
  h.header = kHdrSMagic;
  h.version = kMinBootProtocol;
  h.kernel_alignment = 0x1000000;
  h.initrd_addr_max = 0x7fffffff;  // what x86_64 kernels declare in their own header
  h.cmdline_size = 2047;           // COMMAND_LINE_SIZE (2048) minus the NUL
  h.xloadflags = XLF_KERNEL_64;
  return h;
}
}  // namespace

bool is_elf(std::span<const uint8_t> image) {
  return image.size() >= SELFMAG && std::memcmp(image.data(), ELFMAG, SELFMAG) == 0;
}

Result<LoadedKernel> load_elf(std::span<const uint8_t> image, const GuestMemory& mem) {
  if (image.size() < sizeof(Elf64_Ehdr) || !is_elf(image)) return bad_elf("no ELF header");
  Elf64_Ehdr eh;
  std::memcpy(&eh, image.data(), sizeof(eh));
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB) {
    return bad_elf("not a 64-bit little-endian ELF");
  }
  if (eh.e_machine != EM_X86_64) return bad_elf("machine " + std::to_string(eh.e_machine) + " is not x86_64");
  if (eh.e_type != ET_EXEC) return bad_elf("not an executable (e_type " + std::to_string(eh.e_type) + ")");
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) return bad_elf("unexpected program header size");
  if (eh.e_phnum == 0 || eh.e_phoff > image.size() ||
      uint64_t(eh.e_phnum) * sizeof(Elf64_Phdr) > image.size() - eh.e_phoff) {
    return bad_elf("program headers outside the file");
  }

  const uint64_t low_end = mem.layout().low_ram.end().value();
  uint64_t lowest = UINT64_MAX;
  uint64_t highest = 0;
  std::optional<uint64_t> entry;
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, image.data() + eh.e_phoff + i * sizeof(Elf64_Phdr), sizeof(ph));
    if (ph.p_type != PT_LOAD) continue;
    std::string seg = "segment " + std::to_string(i) + " at " + format_hex(ph.p_paddr);
    if (ph.p_filesz > ph.p_memsz) return bad_elf(seg + ": file size exceeds memory size");
    // An empty PT_LOAD loads nothing; skipped, it cannot ask for a write at the end of RAM.
    if (ph.p_memsz == 0) continue;
    if (ph.p_offset > image.size() || ph.p_filesz > image.size() - ph.p_offset) {
      return bad_elf(seg + ": data outside the file");
    }
    if (ph.p_paddr < layout::kHighMemStart.value()) {
      return bad_elf(seg + ": below 1 MiB, where the boot structures live");
    }
    if (ph.p_paddr + ph.p_memsz < ph.p_paddr || ph.p_paddr + ph.p_memsz > low_end) {
      return fail("kernel", ENOMEM,
                  seg + " of " + format_size(ph.p_memsz) + " ends past low RAM at " + format_hex(low_end),
                  "give the guest more memory with --memory size=...");
    }
    PINLESS_TRY_VOID(mem.write(Gpa(ph.p_paddr), image.subspan(ph.p_offset, ph.p_filesz)));
    PINLESS_TRY_VOID(mem.zero(Gpa(ph.p_paddr + ph.p_filesz), ph.p_memsz - ph.p_filesz));
    lowest = std::min(lowest, ph.p_paddr);
    highest = std::max(highest, ph.p_paddr + ph.p_memsz);
    // e_entry may be virtual (translate through this segment) or already physical
    // (vmlinux: ENTRY(phys_startup_64)).
    if (!entry && eh.e_entry >= ph.p_vaddr && eh.e_entry - ph.p_vaddr < ph.p_memsz) {
      entry = ph.p_paddr + (eh.e_entry - ph.p_vaddr);
    }
    if (!entry && eh.e_entry >= ph.p_paddr && eh.e_entry - ph.p_paddr < ph.p_memsz) {
      entry = eh.e_entry;
    }
  }
  if (highest == 0) return bad_elf("no PT_LOAD segments");
  if (!entry) return bad_elf("entry point " + format_hex(eh.e_entry) + " is in no loaded segment");

  LoadedKernel k;
  k.format = LoadedKernel::Format::kElf;
  k.entry = Gpa(*entry);
  k.image = {Gpa(lowest), highest - lowest};
  k.reserved_end = Gpa(highest);
  k.header = synthesized_header();
  k.header_len = sizeof(setup_header);
  logger("boot")->info("ELF vmlinux: {:#x}..{:#x}, entry {:#x}", lowest, highest, k.entry.value());
  return k;
}

}  // namespace pinless::vmm::boot
