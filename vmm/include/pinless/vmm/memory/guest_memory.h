// GuestMemory: the guest's RAM. One memfd (optionally on hugetlbfs, optionally with THP
// advice) mapped MAP_SHARED once; the mapping is split into regions around the 32-bit PCI
// hole (layout.h), each of which becomes one KVM memslot. Translates guest-physical addresses
// to host pointers with bounds checks: every guest-supplied address goes through here.
// Owns the memfd and the mapping. Thread-safe after creation (the layout is immutable; the
// guest bytes themselves are shared with the guest and need no lock).
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "pinless/base/fd.h"
#include "pinless/base/result.h"
#include "pinless/base/sys.h"
#include "pinless/base/types.h"
#include "pinless/vmm/layout.h"
#include "pinless/vmm/memory/shmem_thp.h"

namespace pinless::vmm {

struct MemoryConfig {
  uint64_t size = 0;
  bool hugepages = false;  // MFD_HUGETLB, 2 MiB pages from /proc/sys/vm/nr_hugepages
  bool thp = false;        // madvise(MADV_HUGEPAGE)
};

struct MemoryRegion {
  Range<Gpa> gpa;
  uint8_t* host = nullptr;
  uint64_t memfd_offset = 0;
  Hva hva() const { return hva_of(host); }
};

class GuestMemory {
 public:
  static constexpr uint64_t kHugePageSize = 2 * kMiB;

  // `shmem_enabled`: where the kernel's shmem THP mode is read for thp=on (tests: a temp file).
  [[nodiscard]] static Result<GuestMemory> create(Sys& sys, const MemoryConfig& config,
                                                  const std::string& shmem_enabled = kShmemEnabledPath);

  GuestMemory(GuestMemory&& o) noexcept = default;
  GuestMemory& operator=(GuestMemory&&) = delete;
  GuestMemory(const GuestMemory&) = delete;

  const layout::MemoryLayout& layout() const { return layout_; }
  const std::vector<MemoryRegion>& regions() const { return regions_; }
  int memfd() const { return memfd_.get(); }
  uint64_t size() const { return layout_.ram_size(); }

  // Host pointer for [gpa, gpa + len), which must lie inside one RAM region.
  [[nodiscard]] Result<uint8_t*> host_ptr(Gpa gpa, uint64_t len) const;
  [[nodiscard]] Result<std::span<uint8_t>> slice(Gpa gpa, uint64_t len) const;
  [[nodiscard]] Status write(Gpa gpa, std::span<const uint8_t> bytes) const;
  [[nodiscard]] Status read(Gpa gpa, std::span<uint8_t> out) const;
  [[nodiscard]] Status zero(Gpa gpa, uint64_t len) const;
  template <typename T>
  [[nodiscard]] Status write_obj(Gpa gpa, const T& obj) const {
    static_assert(std::is_trivially_copyable_v<T>);
    return write(gpa, std::span(reinterpret_cast<const uint8_t*>(&obj), sizeof(T)));
  }
  template <typename T>
  [[nodiscard]] Result<T> read_obj(Gpa gpa) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T obj;
    PINLESS_TRY_VOID(read(gpa, std::span(reinterpret_cast<uint8_t*>(&obj), sizeof(T))));
    return obj;
  }

 private:
  GuestMemory(UniqueFd memfd, MappedMemory map, layout::MemoryLayout layout);

  // Both through the Sys that made them; the mapping goes first (declared after the memfd).
  UniqueFd memfd_;
  MappedMemory map_;  // the single mapping that regions_ point into
  layout::MemoryLayout layout_{};
  std::vector<MemoryRegion> regions_;
};

}  // namespace pinless::vmm
