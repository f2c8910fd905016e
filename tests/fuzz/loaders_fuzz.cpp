// libFuzzer target: a kernel image as `pinless run --kernel` finds it, plus what it is loaded
// with. The input is an 8-byte prefix -- loader (byte 0 % 3: auto-detect, bzImage, ELF), guest
// RAM ((byte 1 % 16 + 1) * 2 MiB), initrd size (bytes 2..5, little-endian; 0 = none), command
// line length (bytes 6..7) -- then the image, which goes through a memfd and MappedFile as the
// file would. Guest RAM is an exact-size heap buffer, so ASan sees any write outside it.
// Checked on every input: no crash, no sanitizer report; nothing written below 1 MiB; a
// failed load fails in the loader's own checks (never at GuestMemory's bounds check), with a
// message; a loaded kernel lies in low RAM above 1 MiB with its entry point inside it (a
// bzImage's protected-mode part copied verbatim); a placed initrd is 2 MiB-aligned, above the
// kernel, below initrd_addr_max and the end of low RAM; an accepted command line fits the
// kernel's limit and reads back from the zero page. Built and run by scripts/fuzz.
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <source_location>
#include <string>
#include <vector>

#include "pinless/base/sys.h"
#include "pinless/vmm/boot/boot_params.h"
#include "pinless/vmm/boot/kernel_loader.h"
#include "pinless/vmm/memory/guest_memory.h"

using namespace pinless;
using namespace pinless::vmm;
using namespace pinless::vmm::boot;

namespace {

// Backs GuestMemory with an exact-size heap block per RAM size instead of a shared memfd
// mapping. The blocks are kept across inputs (fresh ones cost page faults and shadow
// poisoning per input); only the first MiB must read as zero, and is cleared again here.
struct HeapSys final : Sys {
  std::map<size_t, uint8_t*> blocks;
  ~HeapSys() override {
    for (auto& [len, p] : blocks) std::free(p);
  }
  int memfd_create(const char*, unsigned int) override { return 1000; }  // never read or written
  int ftruncate(int, off_t) override { return 0; }
  int close(int) override { return 0; }
  void* mmap(void*, size_t len, int, int, int, off_t, int* err) override {
    uint8_t*& p = blocks[len];
    if (p == nullptr) p = static_cast<uint8_t*>(std::calloc(1, len));
    if (p == nullptr) *err = ENOMEM;
    return p != nullptr ? p : MAP_FAILED;
  }
  int munmap(void* addr, size_t len) override {
    std::memset(addr, 0, std::min<size_t>(len, layout::kHighMemStart.value()));
    return 0;
  }
  int open(const char*, int, mode_t) override { return -ENOSYS; }
  int ioctl(int, unsigned long, void*) override { return -ENOSYS; }
  int ioctl_int(int, unsigned long, unsigned long) override { return -ENOSYS; }
  ssize_t read(int, void*, size_t) override { return -ENOSYS; }
  ssize_t write(int, const void*, size_t) override { return -ENOSYS; }
  ssize_t pread(int, void*, size_t, off_t) override { return -ENOSYS; }
  ssize_t pwrite(int, const void*, size_t, off_t) override { return -ENOSYS; }
  int eventfd(unsigned int, int) override { return -ENOSYS; }
};

void check(bool ok, std::source_location at = std::source_location::current()) {
  if (ok) return;
  std::fprintf(stderr, "check failed at line %u\n", unsigned(at.line()));
  std::abort();
}

template <typename T>
void check_error(const Result<T>& r, std::source_location at = std::source_location::current()) {
  check(!r && !r.error().message().empty(), at);
}

// The image as a file: MappedFile maps it from a memfd, as it would map the --kernel path.
Result<MappedFile> map_image(const uint8_t* data, size_t size) {
  static int fd = ::memfd_create("kernel", MFD_CLOEXEC);
  check(fd >= 0 && ::ftruncate(fd, 0) == 0);
  check(::pwrite(fd, data, size, 0) == ssize_t(size));
  return MappedFile::open("/proc/self/fd/" + std::to_string(fd), "kernel");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static HeapSys sys;
  static const std::vector<uint8_t> kZeros(layout::kHighMemStart.value());
  if (size < 8) return 0;
  const int loader = data[0] % 3;
  const uint64_t ram = (data[1] % 16 + 1) * 2 * kMiB;
  uint32_t initrd_size;
  uint16_t cmdline_len;
  std::memcpy(&initrd_size, data + 2, 4);
  std::memcpy(&cmdline_len, data + 6, 2);
  data += 8;
  size -= 8;

  auto file = map_image(data, size);
  if (size == 0) return check_error(file), 0;  // an empty file is refused before mmap()
  check(file && file->size() == size && std::memcmp(file->bytes().data(), data, size) == 0);
  std::span<const uint8_t> image = file->bytes();
  auto mem = GuestMemory::create(sys, {ram, false, false});
  check(bool(mem));
  auto k = loader == 0 ? load_kernel(image, *mem) : loader == 1 ? load_bzimage(image, *mem) : load_elf(image, *mem);
  auto low = mem->slice(Gpa(0), kZeros.size());
  check(low && std::memcmp(low->data(), kZeros.data(), kZeros.size()) == 0);  // nothing below 1 MiB
  if (!k) {
    check_error(k);
    check(k.error().op() != "guest address");  // the loader's checks come first
    return 0;
  }

  const uint64_t low_end = mem->layout().low_ram.end().value();
  check(k->image.start >= layout::kHighMemStart && k->image.size != 0);
  check(k->image.end().value() <= k->reserved_end.value() && k->reserved_end.value() <= low_end);
  check(k->image.contains(k->entry));
  check(k->header_len <= sizeof(setup_header));
  if (k->format == LoadedKernel::Format::kBzImage) {
    auto info = parse_bzimage(image);
    check(info && info->setup_size + k->image.size == image.size());
    check(k->header_len >= offsetof(setup_header, init_size) + sizeof(uint32_t));  // init_size known
    auto loaded = mem->slice(k->image.start, k->image.size);
    check(loaded && std::memcmp(loaded->data(), image.data() + info->setup_size, k->image.size) == 0);
  }

  BootParamsInput in;
  in.cmdline.assign(cmdline_len, 'x');
  if (initrd_size != 0) {
    auto where = place_initrd(initrd_size, *k, mem->layout());
    if (!where) return check_error(where), 0;
    const uint64_t limit = std::min<uint64_t>(uint64_t(k->header.initrd_addr_max) + 1, low_end);
    check(where->size == initrd_size && where->start.aligned(kInitrdAlign));
    check(where->start >= k->reserved_end && where->end().value() <= limit);
    auto bytes = mem->slice(where->start, where->size);  // where the builder copies the file
    check(bool(bytes));
    bytes->front() = bytes->back() = 0x5a;
    in.initrd = *where;
  }
  auto written = write_boot_params(*mem, *k, in);
  if (!written) return check_error(written), 0;
  const uint64_t cmdline_max = k->header.cmdline_size != 0 ? k->header.cmdline_size : 255;
  check(in.cmdline.size() <= cmdline_max && in.cmdline.size() < layout::kCmdlineMax);
  auto bp = mem->read_obj<boot_params>(layout::kZeroPage);
  check(bp && bp->hdr.cmd_line_ptr == layout::kCmdline.value() && bp->e820_entries != 0);
  check(bp->hdr.ramdisk_image == (in.initrd ? in.initrd->start.value() : 0));  // below 4G: low RAM
  check(bp->hdr.ramdisk_size == (in.initrd ? in.initrd->size : 0));
  auto cmdline = mem->slice(layout::kCmdline, in.cmdline.size() + 1);
  check(cmdline && std::memcmp(cmdline->data(), in.cmdline.data(), in.cmdline.size()) == 0 &&
        cmdline->back() == 0);
  return 0;
}
