#include <doctest/doctest.h>
#include <asm/e820.h>
#include <elf.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "fakes/fake_sys.h"
#include "pinless/vmm/boot/boot_params.h"
#include "pinless/vmm/boot/kernel_loader.h"
#include "pinless/vmm/layout.h"

using namespace pinless;
using namespace pinless::vmm;
using namespace pinless::vmm::boot;
using pinless::testing::FakeSys;

namespace {
// A synthetic bzImage: 4 setup sectors + boot sector, then `payload` bytes of 0xab.
struct BzImageBuilder {
  setup_header hdr{};
  uint8_t jump_len = 0x6a;  // header ends at 0x202 + 0x6a = 0x26c (protocol 2.15 layout)
  uint64_t payload = 64 * 1024;

  BzImageBuilder() {
    hdr.setup_sects = 4;
    hdr.boot_flag = 0xaa55;
    hdr.header = kHdrSMagic;
    hdr.version = 0x020f;
    hdr.loadflags = LOADED_HIGH;
    hdr.initrd_addr_max = 0x7fffffff;
    hdr.kernel_alignment = 0x200000;
    hdr.relocatable_kernel = 1;
    hdr.xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G;
    hdr.cmdline_size = 2047;
    hdr.pref_address = 0x1000000;
    hdr.init_size = 0x2000000;  // 32 MiB
  }
  std::vector<uint8_t> build() const {
    uint64_t setup = (uint64_t(hdr.setup_sects ? hdr.setup_sects : 4) + 1) * 512;
    std::vector<uint8_t> img(setup + payload, 0);
    std::memcpy(img.data() + kSetupHeaderOffset, &hdr, sizeof(hdr));
    img[0x201] = jump_len;  // the high byte of `jump`: the self-described header length
    std::memset(img.data() + setup, 0xab, payload);
    return img;
  }
};

// Packed struct fields cannot bind to doctest's references: compare copies.
uint64_t u(uint64_t v) { return v; }

GuestMemory make_memory(FakeSys& sys, uint64_t size) {
  auto m = GuestMemory::create(sys, {size, false, false});
  REQUIRE(m);
  return std::move(*m);
}
}  // namespace

TEST_CASE("bzImage: parsed, loaded at 1 MiB, 64-bit entry at +0x200") {
  FakeSys sys;
  auto mem = make_memory(sys, 128 * kMiB);
  auto img = BzImageBuilder().build();
  auto k = load_bzimage(img, mem);
  REQUIRE(k);
  CHECK(k->format == LoadedKernel::Format::kBzImage);
  CHECK(k->entry == Gpa(0x100200));
  CHECK(k->image.start == Gpa(0x100000));
  CHECK(k->image.size == 64 * 1024);
  CHECK(k->reserved_end == Gpa(0x1000000 + 0x2000000));  // pref_address + init_size
  CHECK(mem.read_obj<uint8_t>(Gpa(0x100000)).value() == 0xab);
  CHECK(mem.read_obj<uint8_t>(Gpa(0x100000 + 64 * 1024 - 1)).value() == 0xab);
  CHECK(mem.read_obj<uint8_t>(Gpa(0x100000 + 64 * 1024)).value() == 0);
}

TEST_CASE("bzImage: a non-relocatable kernel goes to pref_address") {
  FakeSys sys;
  auto mem = make_memory(sys, 128 * kMiB);
  BzImageBuilder b;
  b.hdr.relocatable_kernel = 0;
  auto k = load_bzimage(b.build(), mem);
  REQUIRE(k);
  CHECK(k->image.start == Gpa(0x1000000));
  CHECK(k->entry == Gpa(0x1000200));
}

TEST_CASE("bzImage: setup_sects 0 means 4, and a short header is cut at its own length") {
  BzImageBuilder b;
  b.hdr.setup_sects = 0;
  b.jump_len = 0x66;  // header ends at 0x268: kernel_info_offset is not part of it
  b.hdr.kernel_info_offset = 0xdeadbeef;
  auto info = parse_bzimage(b.build());
  REQUIRE(info);
  CHECK(info->setup_size == 5 * 512);
  CHECK(u(info->header_len) == 0x268 - 0x1f1);
  CHECK(u(info->header.kernel_info_offset) == 0);
  CHECK(u(info->header.init_size) == 0x2000000);
}

TEST_CASE("bzImage: rejects what it cannot boot, saying why") {
  auto msg = [](const std::vector<uint8_t>& img) {
    auto r = parse_bzimage(img);
    REQUIRE_FALSE(r);
    return r.error().message();
  };
  CHECK(msg(std::vector<uint8_t>(100)).find("not a bzImage") != std::string::npos);
  BzImageBuilder no_magic;
  no_magic.hdr.header = 0;
  CHECK(msg(no_magic.build()).find("HdrS") != std::string::npos);
  BzImageBuilder old;
  old.hdr.version = 0x020b;
  CHECK(msg(old.build()).find("2.11") != std::string::npos);
  BzImageBuilder no64;
  no64.hdr.xloadflags = 0;
  CHECK(msg(no64.build()).find("XLF_KERNEL_64") != std::string::npos);
  BzImageBuilder empty;
  empty.payload = 0;
  CHECK(msg(empty.build()).find("protected-mode") != std::string::npos);
}

TEST_CASE("bzImage: a kernel that does not fit in RAM is an error, not an overflow") {
  FakeSys sys;
  auto mem = make_memory(sys, 64 * kMiB);
  BzImageBuilder b;
  b.hdr.init_size = 0x4000000;  // 64 MiB from 16 MiB: past the end of 64 MiB RAM
  auto k = load_bzimage(b.build(), mem);
  REQUIRE_FALSE(k);
  CHECK(k.error().message().find("--memory") != std::string::npos);
}

namespace {
std::vector<uint8_t> make_elf(uint64_t vaddr, uint64_t paddr, uint64_t entry, uint64_t filesz,
                              uint64_t memsz) {
  std::vector<uint8_t> img(0x1000 + filesz, 0);
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_entry = entry;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 1;
  std::memcpy(img.data(), &eh, sizeof(eh));
  Elf64_Phdr ph{};
  ph.p_type = PT_LOAD;
  ph.p_offset = 0x1000;
  ph.p_vaddr = vaddr;
  ph.p_paddr = paddr;
  ph.p_filesz = filesz;
  ph.p_memsz = memsz;
  std::memcpy(img.data() + eh.e_phoff, &ph, sizeof(ph));
  std::memset(img.data() + 0x1000, 0xcd, filesz);
  return img;
}
}  // namespace

TEST_CASE("ELF: segments by physical address, bss zeroed, entry translated") {
  FakeSys sys;
  auto mem = make_memory(sys, 64 * kMiB);
  REQUIRE(mem.write_obj(Gpa(0x1000000 + 0x3000), uint32_t{0xffffffff}));  // stale bytes in bss
  auto img = make_elf(0xffffffff81000000, 0x1000000, 0xffffffff81000040, 0x2000, 0x4000);
  REQUIRE(is_elf(img));
  auto k = load_kernel(img, mem);
  REQUIRE(k);
  CHECK(k->format == LoadedKernel::Format::kElf);
  CHECK(k->entry == Gpa(0x1000040));
  CHECK(k->reserved_end == Gpa(0x1004000));
  CHECK(mem.read_obj<uint8_t>(Gpa(0x1001fff)).value() == 0xcd);
  CHECK(mem.read_obj<uint32_t>(Gpa(0x1003000)).value() == 0);
  CHECK(u(k->header.header) == kHdrSMagic);

  // vmlinux style: e_entry is already physical.
  auto phys = load_elf(make_elf(0xffffffff81000000, 0x1000000, 0x1000000, 0x100, 0x100), mem);
  REQUIRE(phys);
  CHECK(phys->entry == Gpa(0x1000000));
}

TEST_CASE("ELF: malformed or oversized images are rejected") {
  FakeSys sys;
  auto mem = make_memory(sys, 64 * kMiB);
  auto outside = make_elf(0x1000000, 0x1000000, 0x5000000, 0x100, 0x100);
  CHECK_FALSE(load_elf(outside, mem));                                     // entry nowhere
  CHECK_FALSE(load_elf(make_elf(0x1000, 0x1000, 0x1000, 0x10, 0x10), mem));  // below 1 MiB
  auto big = load_elf(make_elf(0x1000000, 0x1000000, 0x1000000, 0x10, 0x8000000), mem);
  REQUIRE_FALSE(big);
  CHECK(big.error().message().find("--memory") != std::string::npos);
  auto truncated = make_elf(0x1000000, 0x1000000, 0x1000000, 0x100, 0x100);
  truncated.resize(0x1080);
  CHECK_FALSE(load_elf(truncated, mem));
  auto not_kernel = load_kernel(std::vector<uint8_t>(4096, 0x11), mem);
  REQUIRE_FALSE(not_kernel);
  CHECK(not_kernel.error().message().find("bzImage") != std::string::npos);
}

TEST_CASE("E820: RAM, EBDA, ACPI area, low RAM, ECAM, high RAM") {
  auto map = build_e820(layout::compute_layout(4 * kGiB));
  REQUIRE(map.size() == 6);
  CHECK((map[0].addr == 0 && map[0].size == 0x9fc00 && map[0].type == E820_RAM));
  CHECK((map[1].addr == 0x9fc00 && map[1].size == 0x400 && map[1].type == E820_RESERVED));
  CHECK((map[2].addr == 0xe0000 && map[2].size == 0x20000 && map[2].type == E820_RESERVED));
  CHECK((map[3].addr == 0x100000 && map[3].size == 3 * kGiB - 0x100000 && map[3].type == E820_RAM));
  CHECK((map[4].addr == 0xe0000000 && map[4].size == 256 * kMiB && map[4].type == E820_RESERVED));
  CHECK((map[5].addr == 4 * kGiB && map[5].size == kGiB && map[5].type == E820_RAM));
  CHECK(build_e820(layout::compute_layout(256 * kMiB)).size() == 5);
}

TEST_CASE("initrd goes to the highest 2 MiB-aligned spot below the limit") {
  LoadedKernel k;
  k.header.initrd_addr_max = 0x7fffffff;
  k.reserved_end = Gpa(0x3000000);
  auto l = layout::compute_layout(256 * kMiB);
  auto r = place_initrd(5 * kMiB + 3, k, l);
  REQUIRE(r);
  CHECK(r->start == Gpa(align_down(256 * kMiB - (5 * kMiB + 3), 2 * kMiB)));
  CHECK(r->end() <= Gpa(256 * kMiB));

  // initrd_addr_max below the end of RAM wins.
  k.header.initrd_addr_max = 0x5fffffff;
  auto big = layout::compute_layout(3 * kGiB);
  auto r2 = place_initrd(kMiB, k, big);
  REQUIRE(r2);
  CHECK(r2->start == Gpa(0x60000000 - 2 * kMiB));

  // Too big: would overlap the kernel.
  k.header.initrd_addr_max = 0x7fffffff;
  CHECK(place_initrd(256 * kMiB - 0x3000000, k, l));  // exactly fits above the kernel
  auto r3 = place_initrd(256 * kMiB - 0x3000000 + 1, k, l);
  REQUIRE_FALSE(r3);
  CHECK(r3.error().message().find("initrd") != std::string::npos);
  CHECK_FALSE(place_initrd(kGiB, k, l));
}

TEST_CASE("command line limits come from the kernel's cmdline_size") {
  LoadedKernel k;
  k.header.cmdline_size = 10;
  CHECK(check_cmdline("0123456789", k));
  auto r = check_cmdline("0123456789a", k);
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("at most 10") != std::string::npos);
  CHECK_FALSE(check_cmdline(std::string("a\0b", 3), k));
  k.header.cmdline_size = 0;  // pre-2.06 kernels: 255
  CHECK(check_cmdline(std::string(255, 'x'), k));
  CHECK_FALSE(check_cmdline(std::string(256, 'x'), k));
}

TEST_CASE("boot_params: header copied, loader fields, initrd, E820, RSDP, cmdline written") {
  FakeSys sys;
  auto mem = make_memory(sys, 256 * kMiB);
  auto k = load_bzimage(BzImageBuilder().build(), mem);
  REQUIRE(k);
  BootParamsInput in;
  in.cmdline = "console=ttyS0 reboot=k panic=-1 quiet";
  in.initrd = Range<Gpa>{Gpa(0xa000000), 0x123456};
  in.rsdp = Gpa(0xe0000);
  // Stale bytes after the command line must not extend it.
  REQUIRE(mem.write_obj(layout::kCmdline + in.cmdline.size(), uint32_t{0x41414141}));
  REQUIRE(write_boot_params(mem, *k, in));
  auto bp = mem.read_obj<boot_params>(layout::kZeroPage);
  REQUIRE(bp);
  CHECK(u(bp->hdr.header) == kHdrSMagic);
  CHECK(u(bp->hdr.version) == 0x020f);
  CHECK(u(bp->hdr.boot_flag) == 0xaa55);
  CHECK(u(bp->hdr.type_of_loader) == 0xff);
  CHECK(u(bp->hdr.cmd_line_ptr) == 0x20000);
  CHECK(u(bp->ext_cmd_line_ptr) == 0);
  CHECK(u(bp->hdr.ramdisk_image) == 0xa000000);
  CHECK(u(bp->hdr.ramdisk_size) == 0x123456);
  CHECK(u(bp->ext_ramdisk_image) == 0);
  CHECK(u(bp->ext_ramdisk_size) == 0);
  CHECK(u(bp->acpi_rsdp_addr) == 0xe0000);
  CHECK(bp->e820_entries == 5);
  CHECK(u(bp->e820_table[3].addr) == 0x100000);
  CHECK((bp->hdr.loadflags & LOADED_HIGH) != 0);
  std::vector<char> cmd(in.cmdline.size() + 1);
  REQUIRE(mem.read(layout::kCmdline, std::span(reinterpret_cast<uint8_t*>(cmd.data()), cmd.size())));
  CHECK(std::string(cmd.data()) == in.cmdline);
}

TEST_CASE("boot_params: the initrd's high 32 bits go to the ext_ fields") {
  LoadedKernel k;
  k.header.cmdline_size = 100;
  BootParamsInput in;
  in.initrd = Range<Gpa>{Gpa(0x123400000ull), 0x100000000ull + 5};
  auto bp = build_boot_params(k, layout::compute_layout(8 * kGiB), in);
  REQUIRE(bp);
  CHECK(u(bp->hdr.ramdisk_image) == 0x23400000);
  CHECK(u(bp->ext_ramdisk_image) == 1);
  CHECK(u(bp->hdr.ramdisk_size) == 5);
  CHECK(u(bp->ext_ramdisk_size) == 1);
}

TEST_CASE("MappedFile: maps a file, names missing, empty and non-regular files") {
  char tmpl[] = "/tmp/pinless-mapped-XXXXXX";
  int fd = ::mkstemp(tmpl);
  REQUIRE(fd >= 0);
  auto empty = MappedFile::open(tmpl, "initrd");
  REQUIRE_FALSE(empty);
  CHECK(empty.error().message().find("empty") != std::string::npos);
  REQUIRE(::write(fd, "abc", 3) == 3);
  ::close(fd);
  auto f = MappedFile::open(tmpl, "initrd");
  REQUIRE(f);
  CHECK(f->size() == 3);
  CHECK(f->bytes()[2] == 'c');
  ::unlink(tmpl);
  auto missing = MappedFile::open("/nonexistent/bzImage", "kernel");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message().find("/nonexistent/bzImage") != std::string::npos);
  CHECK(missing.error().message().find("--kernel") != std::string::npos);
  CHECK_FALSE(MappedFile::open("/tmp", "kernel"));
}

// Found by tests/fuzz/loaders_fuzz.cpp; the inputs are kept in tests/fuzz/corpus/loaders/.
TEST_CASE("bzImage: a protected-mode part that ends before the 64-bit entry is refused") {
  BzImageBuilder b;
  b.payload = 0x200;  // the vCPU would start at +0x200, past the last byte loaded
  auto r = parse_bzimage(b.build());
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("64-bit entry point at +0x200") != std::string::npos);
  b.payload = 0x201;
  CHECK(parse_bzimage(b.build()));
}

TEST_CASE("bzImage: a setup header that ends before init_size is refused") {
  BzImageBuilder b;
  b.jump_len = 0x41;  // header ends at 0x243: init_size (0x260) would read as zero
  auto r = parse_bzimage(b.build());
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("before init_size") != std::string::npos);
  b.jump_len = 0x62;  // ends at 0x264, right after init_size
  auto ok = parse_bzimage(b.build());
  REQUIRE(ok);
  CHECK(u(ok->header.init_size) == 0x2000000);
}

TEST_CASE("bzImage: a pref_address near 2^64 is a RAM error, not a wrapped end") {
  FakeSys sys;
  auto mem = make_memory(sys, 64 * kMiB);
  BzImageBuilder b;
  b.hdr.relocatable_kernel = 0;
  b.hdr.pref_address = UINT64_MAX - 0xfff;  // + payload and + init_size both wrap
  b.hdr.init_size = 0x2000;
  auto k = load_bzimage(b.build(), mem);
  REQUIRE_FALSE(k);
  CHECK(k.error().err() == ENOMEM);
  CHECK(k.error().message().find("--memory") != std::string::npos);
}

TEST_CASE("ELF: an empty PT_LOAD is skipped, even at the end of RAM") {
  FakeSys sys;
  auto mem = make_memory(sys, 64 * kMiB);
  auto img = make_elf(0x1000000, 0x1000000, 0x1000000, 0x100, 0x100);
  Elf64_Phdr empty{};
  empty.p_type = PT_LOAD;
  empty.p_offset = 0x1000;
  empty.p_paddr = empty.p_vaddr = 64 * kMiB;  // where RAM ends: a write of 0 bytes there fails
  std::memcpy(img.data() + sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr), &empty, sizeof(empty));
  img[offsetof(Elf64_Ehdr, e_phnum)] = 2;
  auto k = load_elf(img, mem);
  REQUIRE(k);
  CHECK(k->reserved_end == Gpa(0x1000100));
  img[offsetof(Elf64_Ehdr, e_phnum)] = 1;
  std::memcpy(img.data() + sizeof(Elf64_Ehdr), &empty, sizeof(empty));  // only the empty one
  auto none = load_elf(img, mem);
  REQUIRE_FALSE(none);
  CHECK(none.error().message().find("no PT_LOAD") != std::string::npos);
}

TEST_CASE("boot_params: ramdisk fields in the image's header are not passed on without an initrd") {
  FakeSys sys;
  auto mem = make_memory(sys, 128 * kMiB);
  BzImageBuilder b;
  b.hdr.ramdisk_image = 0x3000000;  // the boot loader's fields, set in the file
  b.hdr.ramdisk_size = 0x100000;
  auto k = load_bzimage(b.build(), mem);
  REQUIRE(k);
  auto bp = build_boot_params(*k, mem.layout(), BootParamsInput{});
  REQUIRE(bp);
  CHECK(u(bp->hdr.ramdisk_image) == 0);
  CHECK(u(bp->hdr.ramdisk_size) == 0);
  BootParamsInput in;
  in.initrd = Range<Gpa>{Gpa(0x6000000), 0x2000};
  auto with = build_boot_params(*k, mem.layout(), in);
  REQUIRE(with);
  CHECK(u(with->hdr.ramdisk_image) == 0x6000000);
  CHECK(u(with->hdr.ramdisk_size) == 0x2000);
}
