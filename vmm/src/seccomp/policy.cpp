#include "pinless/vmm/seccomp_policy.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <span>

#include "pinless/base/log.h"

namespace pinless::vmm {
namespace {

using seccomp::Rule;

constexpr uint8_t kKvmIoctl = 0xae;   // KVMIO
constexpr uint8_t kVfioIoctl = ';';   // VFIO_TYPE and IOMMUFD_TYPE
constexpr uint8_t kTermIoctl = 'T';   // FIONBIO, FIOCLEX (Asio sets sockets non-blocking)

// Both kinds of thread: stdio (the serial console, logs) and device fds, the device ioctls,
// memory (malloc, vectors), locks and condition variables, clocks, signals (vCPU kicks, the
// SIGSYS report), exit.
constexpr Rule kCommon[] = {
    {"read", {}}, {"write", {}}, {"readv", {}}, {"writev", {}}, {"pread64", {}}, {"pwrite64", {}},
    {"lseek", {}}, {"close", {}}, {"fstat", {}}, {"newfstatat", {}}, {"eventfd2", {}},
    {"ioctl", kKvmIoctl}, {"ioctl", kVfioIoctl},
    {"mmap", {}}, {"munmap", {}}, {"mprotect", {}}, {"mremap", {}}, {"madvise", {}}, {"brk", {}},
    {"futex", {}}, {"sched_yield", {}}, {"nanosleep", {}}, {"clock_nanosleep", {}},
    {"clock_gettime", {}}, {"clock_getres", {}}, {"gettimeofday", {}},
    {"getpid", {}}, {"gettid", {}}, {"tgkill", {}}, {"rt_sigprocmask", {}}, {"rt_sigreturn", {}},
    {"restart_syscall", {}}, {"exit", {}}, {"exit_group", {}},
};

// The event loop besides: the loop's own calls, the control API's socket, reports, and the
// threads that pre-fault memory when a region switches from dma=fault to dma=pin at run time.
constexpr Rule kEventLoopOnly[] = {
    {"epoll_wait", {}}, {"epoll_pwait", {}}, {"epoll_ctl", {}}, {"timerfd_settime", {}}, {"timerfd_gettime", {}},
    {"poll", {}}, {"ppoll", {}},
    // Connections on the socket bound at start-up, and its removal at the end.
    {"accept", {}}, {"accept4", {}}, {"recvfrom", {}}, {"recvmsg", {}}, {"sendto", {}}, {"sendmsg", {}},
    {"shutdown", {}}, {"getsockopt", {}}, {"setsockopt", {}}, {"getsockname", {}}, {"getpeername", {}},
    {"fcntl", {}}, {"ioctl", kTermIoctl}, {"unlink", {}}, {"unlinkat", {}},
    // /proc/self/status for pinned memory, --timeline FILE, RLIMIT_MEMLOCK in error messages.
    {"openat", {}}, {"statx", {}}, {"prlimit64", {}}, {"sysinfo", {}},
    // iommu/populate's threads (they inherit this filter).
    {"clone", {}}, {"clone3", {}}, {"set_robust_list", {}}, {"rseq", {}}, {"sched_getaffinity", {}},
};

// What the sanitizer runtimes call on their own (the unit tests also run under ASan+UBSan and
// TSan): an alternate signal stack per thread, a pipe to probe memory. Not in shipped builds.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
constexpr Rule kSanitizerRuntime[] = {{"sigaltstack", {}}, {"pipe2", {}}};

std::vector<seccomp::Rule> with_common(std::span<const Rule> own) {
  std::vector<seccomp::Rule> rules(std::begin(kCommon), std::end(kCommon));
  rules.insert(rules.end(), own.begin(), own.end());
  if (kSanitized) rules.insert(rules.end(), std::begin(kSanitizerRuntime), std::end(kSanitizerRuntime));
  return rules;
}

}  // namespace

std::vector<seccomp::Rule> vcpu_seccomp_rules() { return with_common({}); }
std::vector<seccomp::Rule> event_loop_seccomp_rules() { return with_common(kEventLoopOnly); }

void call_forbidden_syscall(const char* who) {
  logger("vmm")->warn("seccomp self-test: {} calls socket(), which no filter allows", who);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int err = errno;
  if (fd >= 0) ::close(fd);
  logger("vmm")->warn("seccomp self-test: {} is still running (socket() {}): the filter is off or logs", who,
                      fd >= 0 ? "succeeded" : std::strerror(err));
}

Result<SeccompFilters> make_seccomp_filters(seccomp::Mode mode) {
  SeccompFilters f;
  f.vcpu = PINLESS_TRY(seccomp::compile("vcpu", vcpu_seccomp_rules(), mode));
  f.event_loop = PINLESS_TRY(seccomp::compile("event loop", event_loop_seccomp_rules(), mode));
  if (mode == seccomp::Mode::kTrap) PINLESS_TRY_VOID(seccomp::install_sigsys_reporter());
  return f;
}

}  // namespace pinless::vmm
