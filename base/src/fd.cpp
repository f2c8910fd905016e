#include "pinless/base/fd.h"

#include <cerrno>
#include <cstring>

#include "pinless/base/log.h"
#include "pinless/base/sys.h"

namespace pinless {

void UniqueFd::reset(int fd) {
  int old = std::exchange(fd_, fd);
  if (old < 0) return;
  Sys& sys = sys_ != nullptr ? *sys_ : linux_sys();
  // The fd is gone whatever close() returns (Linux releases it even on EINTR), so there is
  // nothing to retry; EBADF means something else closed our fd, which is a bug worth a line.
  if (int r = sys.close(old); r == -EBADF) logger("vmm")->error("close of fd {}: not open (closed twice?)", old);
}

void MappedMemory::reset() {
  if (addr_ == nullptr) return;
  Sys& sys = sys_ != nullptr ? *sys_ : linux_sys();
  if (int r = sys.munmap(std::exchange(addr_, nullptr), std::exchange(size_, 0)); r < 0) {
    logger("vmm")->error("munmap failed: {}", std::strerror(-r));
  }
}

}  // namespace pinless
