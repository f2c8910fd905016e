#include "pinless/base/seccomp.h"

#include <linux/seccomp.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>

#include "pinless/base/fd.h"

namespace pinless::seccomp {
namespace {

// Syscall names for the SIGSYS report, resolved when a filter is compiled (libseccomp
// allocates, which a signal handler must not), never freed.
constexpr int kNamedSyscalls = 512;
std::array<const char*, kNamedSyscalls> g_names{};
// Empty in threads that did not install a filter themselves (they inherited one).
thread_local char t_thread_name[16] = "";

void resolve_names() {
  static const bool done = [] {
    for (int n = 0; n < kNamedSyscalls; ++n) g_names[size_t(n)] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, n);
    return true;
  }();
  (void)done;
}

// Appends `s` to buf at *len (async-signal-safe).
void put(char* buf, size_t cap, size_t* len, const char* s) {
  while (*s != '\0' && *len + 1 < cap) buf[(*len)++] = *s++;
}
void put_num(char* buf, size_t cap, size_t* len, long v) {
  char digits[24];
  int n = 0;
  unsigned long u = v < 0 ? 0UL - static_cast<unsigned long>(v) : static_cast<unsigned long>(v);
  do {
    digits[n++] = char('0' + u % 10);
    u /= 10;
  } while (u != 0 && n < 23);
  if (v < 0) put(buf, cap, len, "-");
  while (n > 0 && *len + 1 < cap) buf[(*len)++] = digits[--n];
}

void put_hex(char* buf, size_t cap, size_t* len, unsigned long v) {
  char digits[17];
  int n = 0;
  do {
    digits[n++] = "0123456789abcdef"[v & 0xf];
    v >>= 4;
  } while (v != 0 && n < 16);
  while (n > 0 && *len + 1 < cap) buf[(*len)++] = digits[--n];
}

// The trapped call's second argument, from the registers the signal saved.
unsigned long syscall_arg1(void* ctx) {
  const auto* uc = static_cast<const ucontext_t*>(ctx);
#if defined(__x86_64__)
  return static_cast<unsigned long>(uc->uc_mcontext.gregs[REG_RSI]);
#elif defined(__aarch64__)
  return static_cast<unsigned long>(uc->uc_mcontext.regs[1]);
#else
  (void)uc;
  return 0;
#endif
}

void on_sigsys(int, siginfo_t* si, void* ctx) {
  char buf[512];
  size_t len = 0;
  const int nr = si->si_syscall;
  put(buf, sizeof buf, &len, "pinless: seccomp: thread ");
  put(buf, sizeof buf, &len, t_thread_name[0] != '\0' ? t_thread_name : "(a worker: its creator's filter)");
  put(buf, sizeof buf, &len, " called ");
  const char* name = nr >= 0 && nr < kNamedSyscalls ? g_names[size_t(nr)] : nullptr;
  put(buf, sizeof buf, &len, name != nullptr ? name : "an unknown syscall");
  put(buf, sizeof buf, &len, " (syscall ");
  put_num(buf, sizeof buf, &len, nr);
  // ioctl's request says which device interface (a filter allows ioctls by type).
  if (nr == __NR_ioctl) {
    put(buf, sizeof buf, &len, ", request 0x");
    put_hex(buf, sizeof buf, &len, syscall_arg1(ctx));
  }
  put(buf, sizeof buf, &len,
      "), which its filter does not allow; pinless stops with SIGSYS. This is a pinless bug: "
      "report it with this line; meanwhile --seccomp log runs the VM and the kernel logs such "
      "calls (dmesg), or --seccomp off\n");
  for (size_t off = 0; off < len;) {
    ssize_t w = ::write(STDERR_FILENO, buf + off, len - off);
    if (w <= 0) break;
    off += size_t(w);
  }
  // SA_RESETHAND made SIGSYS's action the default again, SA_NODEFER left it unblocked: this
  // ends the process, killed by SIGSYS.
  ::raise(SIGSYS);
}

struct CtxDeleter {
  void operator()(scmp_filter_ctx c) const { seccomp_release(c); }
};

}  // namespace

const char* to_string(Mode m) {
  switch (m) {
    case Mode::kOff:
      return "off";
    case Mode::kLog:
      return "log";
    case Mode::kTrap:
      return "on";
  }
  return "?";
}

Result<Filter> compile(std::string name, std::span<const Rule> rules, Mode mode) {
  Filter f{std::move(name), mode, {}};
  if (mode == Mode::kOff) return f;
  resolve_names();
  std::unique_ptr<void, CtxDeleter> ctx(seccomp_init(mode == Mode::kLog ? SCMP_ACT_LOG : SCMP_ACT_TRAP));
  if (!ctx) return fail("seccomp_init", ENOMEM, f.name);
  // Another architecture's syscall numbers (an x32 or i386 call on x86-64) mean nothing here.
  if (int r = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS); r < 0) {
    return fail("seccomp_attr_set", -r, f.name);
  }
  for (const Rule& rule : rules) {
    const int nr = seccomp_syscall_resolve_name(rule.syscall);
    if (nr == __NR_SCMP_ERROR) return fail("seccomp", EINVAL, f.name + ": " + rule.syscall, "no such syscall here");
    int r = 0;
    if (rule.ioctl_type) {
      const scmp_datum_t type = scmp_datum_t(*rule.ioctl_type) << 8;
      r = seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, nr, 1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, type));
    } else {
      r = seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, nr, 0);
    }
    if (r < 0) return fail("seccomp_rule_add", -r, f.name + ": " + rule.syscall);
  }
  // libseccomp 2.5 exports to a file descriptor only: a memfd, read back.
  UniqueFd mem(::memfd_create("pinless-seccomp", MFD_CLOEXEC));
  if (!mem.valid()) return fail_errno("memfd_create", f.name + " filter");
  if (int r = seccomp_export_bpf(ctx.get(), mem.get()); r < 0) return fail("seccomp_export_bpf", -r, f.name);
  const off_t size = ::lseek(mem.get(), 0, SEEK_END);
  if (size <= 0 || size % off_t(sizeof(sock_filter)) != 0) return fail("seccomp_export_bpf", EIO, f.name, "odd size");
  f.program.resize(size_t(size) / sizeof(sock_filter));
  if (::pread(mem.get(), f.program.data(), size_t(size), 0) != size) return fail_errno("pread", f.name + " filter");
  return f;
}

Status install(const Filter& filter, std::string_view thread_name) {
  if (filter.mode == Mode::kOff) return {};
  const size_t n = std::min(thread_name.size(), sizeof t_thread_name - 1);
  std::memcpy(t_thread_name, thread_name.data(), n);
  t_thread_name[n] = '\0';
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return fail_errno("prctl(PR_SET_NO_NEW_PRIVS)", filter.name);
  sock_fprog prog{static_cast<unsigned short>(filter.program.size()), const_cast<sock_filter*>(filter.program.data())};
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
    return std::unexpected(Error("seccomp(SECCOMP_SET_MODE_FILTER)", errno, filter.name + " filter on " +
                                 std::string(thread_name))
                               .with_hint("the kernel needs CONFIG_SECCOMP_FILTER; or run with --seccomp off"));
  }
  return {};
}

Status install_sigsys_reporter() {
  struct sigaction sa {};
  sa.sa_sigaction = on_sigsys;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_NODEFER;
  if (::sigaction(SIGSYS, &sa, nullptr) != 0) return fail_errno("sigaction(SIGSYS)");
  return {};
}

}  // namespace pinless::seccomp
