#include "pinless/vmm/memory/guest_memory.h"

#include <linux/memfd.h>
#include <sys/mman.h>

#include <utility>

#include "pinless/base/log.h"
#include "pinless/base/size.h"

namespace pinless::vmm {
namespace {
std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%#llx", static_cast<unsigned long long>(v));
  return buf;
}
}  // namespace

Result<GuestMemory> GuestMemory::create(Sys& sys, const MemoryConfig& config, const std::string& shmem_enabled) {
  const uint64_t size = config.size;
  if (size == 0 || size % kHugePageSize != 0) {
    return fail("guest memory", EINVAL, "size " + format_size(size),
                "the memory size must be a non-zero multiple of 2M");
  }
  unsigned flags = 0;
  if (config.hugepages) flags |= MFD_HUGETLB | MFD_HUGE_2MB;
  int fd = sys.memfd_create("pinless-guest-ram", flags);
  if (fd < 0) {
    auto err = fail("memfd_create", -fd, "guest RAM");
    if (config.hugepages) {
      return std::unexpected(std::move(err.error()).with_hint(
          "this kernel cannot back memory with hugetlbfs; drop hugepages=on"));
    }
    return err;
  }
  UniqueFd memfd(sys, fd);
  if (int r = sys.ftruncate(memfd.get(), off_t(size)); r < 0) {
    return fail("ftruncate", -r, "guest RAM memfd to " + format_size(size));
  }
  int err = 0;
  // MAP_SHARED without MAP_NORESERVE: with hugetlbfs the huge pages are reserved here, so
  // a shortage fails now with ENOMEM instead of SIGBUS when the guest touches the page.
  void* base = sys.mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0, &err);
  if (base == MAP_FAILED) {
    if (config.hugepages && err == ENOMEM) {
      uint64_t pages = size / kHugePageSize;
      return fail("mmap", err, "guest RAM (" + format_size(size) + " on 2M huge pages)",
                  "not enough huge pages reserved; reserve them with: echo " +
                      std::to_string(pages) + " > /proc/sys/vm/nr_hugepages");
    }
    return fail("mmap", err, "guest RAM (" + format_size(size) + ")");
  }
  MappedMemory map(sys, base, size);
  if (config.thp) {
    // Not fatal either way: the guest still runs, on small pages. madvise returns 0 even when
    // shmem_enabled ignores it, so that file decides the warning. The advice is given anyway:
    // shmem_enabled is consulted at fault time, so fixing it while the VM runs still helps.
    if (::madvise(base, size, MADV_HUGEPAGE) != 0) {
      logger("vmm")->warn("--memory thp=on: madvise(MADV_HUGEPAGE) on guest RAM failed: {}", std::strerror(errno));
    }
    if (std::string why = check_shmem_thp(shmem_enabled); !why.empty()) logger("vmm")->warn("{}", why);
  }
  return GuestMemory(std::move(memfd), std::move(map), layout::compute_layout(size));
}

GuestMemory::GuestMemory(UniqueFd memfd, MappedMemory map, layout::MemoryLayout layout)
    : memfd_(std::move(memfd)), map_(std::move(map)), layout_(layout) {
  uint8_t* bytes = map_.bytes();
  regions_.push_back({layout_.low_ram, bytes, 0});
  if (layout_.high_ram.size != 0) {
    regions_.push_back({layout_.high_ram, bytes + layout_.low_ram.size, layout_.low_ram.size});
  }
}

Result<uint8_t*> GuestMemory::host_ptr(Gpa gpa, uint64_t len) const {
  for (const auto& r : regions_) {
    if (r.gpa.contains(gpa, len)) return r.host + (gpa - r.gpa.start);
  }
  return fail("guest address", EFAULT, hex(gpa.value()) + "+" + hex(len),
              "outside guest RAM");
}

Result<std::span<uint8_t>> GuestMemory::slice(Gpa gpa, uint64_t len) const {
  uint8_t* p = PINLESS_TRY(host_ptr(gpa, len));
  return std::span<uint8_t>(p, len);
}

Status GuestMemory::write(Gpa gpa, std::span<const uint8_t> bytes) const {
  uint8_t* p = PINLESS_TRY(host_ptr(gpa, bytes.size()));
  if (!bytes.empty()) std::memcpy(p, bytes.data(), bytes.size());
  return {};
}

Status GuestMemory::read(Gpa gpa, std::span<uint8_t> out) const {
  uint8_t* p = PINLESS_TRY(host_ptr(gpa, out.size()));
  if (!out.empty()) std::memcpy(out.data(), p, out.size());
  return {};
}

Status GuestMemory::zero(Gpa gpa, uint64_t len) const {
  uint8_t* p = PINLESS_TRY(host_ptr(gpa, len));
  if (len != 0) std::memset(p, 0, len);
  return {};
}

}  // namespace pinless::vmm
