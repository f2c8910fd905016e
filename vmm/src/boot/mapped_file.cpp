// MappedFile: kernel and initrd files are mmap()ed read-only instead of read into a buffer,
// so loading costs one copy (file pages -> guest RAM).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pinless/vmm/boot/kernel_loader.h"

namespace pinless::vmm::boot {

Result<MappedFile> MappedFile::open(const std::string& path, const std::string& what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return fail("open", e, what + " " + path,
                e == ENOENT ? "check the --" + what + " path" : std::string());
  }
  UniqueFd file(fd);
  struct stat st {};
  if (::fstat(file.get(), &st) != 0) return fail_errno("fstat", what + " " + path);
  if (!S_ISREG(st.st_mode)) return fail("open", EINVAL, what + " " + path, "not a regular file");
  if (st.st_size == 0) return fail("open", EINVAL, what + " " + path, "the file is empty");
  void* p = ::mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_PRIVATE, file.get(), 0);
  if (p == MAP_FAILED) return fail_errno("mmap", what + " " + path);
  return MappedFile(MappedMemory(p, size_t(st.st_size)), uint64_t(st.st_size));
}

}  // namespace pinless::vmm::boot
