#include "pinless/base/fd.h"

#include <sys/mman.h>
#include <unistd.h>

namespace pinless {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

void MappedMemory::reset() {
  if (addr_ != nullptr) ::munmap(addr_, size_);
  addr_ = nullptr;
  size_ = 0;
}

}  // namespace pinless
