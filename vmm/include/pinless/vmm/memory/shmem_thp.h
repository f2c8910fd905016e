// Whether `--memory thp=on` can give guest RAM transparent huge pages. Guest RAM is a memfd,
// i.e. shmem, so what decides is /sys/kernel/mm/transparent_hugepage/shmem_enabled, not the
// anonymous-memory knob `enabled`: `advise`, `within_size`, `always` and `force` honour
// MADV_HUGEPAGE (or give huge pages anyway); `never` (the kernel default) and `deny` ignore
// it, and madvise still returns 0, so its result cannot tell. Pure functions and one file
// read; thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace pinless::vmm {

inline constexpr const char* kShmemEnabledPath = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";

// The selected (bracketed) word of the file's text: "always within_size advise [never] deny
// force" -> "never". Empty if there is none.
std::string_view shmem_thp_mode(std::string_view text);

// The warning for thp=on when `path` holds `text`, naming the file and the fix; empty when
// MADV_HUGEPAGE takes effect.
std::string shmem_thp_warning(std::string_view text, const std::string& path);

// Reads `path` and returns shmem_thp_warning of its text, or a warning that it cannot be read.
std::string check_shmem_thp(const std::string& path = kShmemEnabledPath);

}  // namespace pinless::vmm
