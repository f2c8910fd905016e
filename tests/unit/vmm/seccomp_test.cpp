// seccomp filters against the real kernel: each case forks a child that installs a filter
// and makes calls the filter allows or forbids; the parent reads how it ended and what it
// wrote to stderr. (A filter binds its thread for good, so never in the test process itself.)
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <string>
#include <thread>

#include "pinless/base/linux_kvm.h"
#include "pinless/base/seccomp.h"
#include "pinless/vmm/seccomp_policy.h"

using namespace pinless;

namespace {

struct Ended {
  bool exited = false;
  int code = -1;    // exit status when exited
  int signal = 0;   // the killing signal otherwise
  std::string err;  // what the child wrote to stderr
};

// Runs `body` in a child with stderr on a pipe; the child exits 0 when body returns.
Ended in_child(const std::function<void()>& body) {
  int p[2];
  REQUIRE(::pipe(p) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(p[1], STDERR_FILENO);
    ::close(p[0]);
    body();
    ::_exit(0);
  }
  ::close(p[1]);
  Ended e;
  char buf[1024];
  for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0;) e.err.append(buf, size_t(n));
  ::close(p[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  e.exited = WIFEXITED(status);
  e.code = e.exited ? WEXITSTATUS(status) : -1;
  e.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  return e;
}

void install_or_exit(const seccomp::Filter& f, const char* name) {
  if (!seccomp::install(f, name)) ::_exit(90);
}

// A child that installs `f` as thread `name` and calls socket(): exits 0 if the call went
// through, 91 if the kernel refused it otherwise.
Ended socket_under(const seccomp::Filter& f, const char* name) {
  return in_child([&] {
    install_or_exit(f, name);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ::_exit(fd >= 0 ? 0 : 91);
  });
}

}  // namespace

TEST_CASE("seccomp: a syscall name libseccomp does not know is an error naming it") {
  const seccomp::Rule rules[] = {{"read", {}}, {"no_such_call", {}}};
  auto f = seccomp::compile("test", rules, seccomp::Mode::kTrap);
  REQUIRE_FALSE(f);
  CHECK(f.error().message().find("no_such_call") != std::string::npos);
}

TEST_CASE("seccomp: off compiles to nothing; log lets a forbidden call through") {
  for (auto mode : {seccomp::Mode::kOff, seccomp::Mode::kLog}) {
    CAPTURE(seccomp::to_string(mode));
    auto filters = vmm::make_seccomp_filters(mode);
    REQUIRE(filters);
    CHECK(filters->vcpu.program.empty() == (mode == seccomp::Mode::kOff));
    for (const auto* f : {&filters->vcpu, &filters->event_loop}) {
      Ended e = socket_under(*f, "thread");
      CHECK(e.exited);
      CHECK(e.code == 0);
    }
  }
}

TEST_CASE("seccomp: a vCPU thread's forbidden syscall ends pinless with SIGSYS and a line naming thread and call") {
  auto filters = vmm::make_seccomp_filters(seccomp::Mode::kTrap);
  REQUIRE(filters);
  CHECK_FALSE(filters->vcpu.program.empty());
  Ended e = socket_under(filters->vcpu, "vcpu3");
  CHECK(e.signal == SIGSYS);
  CHECK(e.err.find("pinless: seccomp: thread vcpu3 called socket (syscall 41), which its filter does not allow") !=
        std::string::npos);
}

TEST_CASE("seccomp: the vCPU filter lets KVM's and VFIO's ioctls through, not a terminal's") {
  auto filters = vmm::make_seccomp_filters(seccomp::Mode::kTrap);
  REQUIRE(filters);
  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  REQUIRE(null_fd >= 0);
  // KVM_GET_API_VERSION on /dev/null reaches the kernel (which says ENOTTY): allowed.
  Ended kvm = in_child([&] {
    install_or_exit(filters->vcpu, "vcpu0");
    const int r = ::ioctl(null_fd, KVM_GET_API_VERSION, 0);
    ::_exit(r < 0 && errno == ENOTTY ? 0 : 93);
  });
  INFO("the child's stderr: ", kvm.err);
  CHECK(kvm.exited);
  CHECK(kvm.code == 0);
  // TCGETS ('T'): not a vCPU's business.
  Ended tty = in_child([&] {
    install_or_exit(filters->vcpu, "vcpu0");
    termios t{};
    [[maybe_unused]] int r = ::ioctl(null_fd, TCGETS, &t);
    ::_exit(94);
  });
  CHECK(tty.signal == SIGSYS);
  CHECK(tty.err.find("called ioctl") != std::string::npos);
  // The event loop may: Asio sets its sockets non-blocking with FIONBIO.
  Ended loop = in_child([&] {
    install_or_exit(filters->event_loop, "event-loop");
    int on = 1;
    const int r = ::ioctl(null_fd, FIONBIO, &on);
    ::_exit(r == 0 || errno == ENOTTY ? 0 : 95);
  });
  INFO("the child's stderr: ", loop.err);
  CHECK(loop.exited);
  CHECK(loop.code == 0);
  ::close(null_fd);
}

TEST_CASE("seccomp: a thread created after the filter inherits it") {
  auto filters = vmm::make_seccomp_filters(seccomp::Mode::kTrap);
  REQUIRE(filters);
  Ended e = in_child([&] {
    // As in pinless, where the vCPU threads exist before the loop's filter: glibc sets up
    // its thread signals (rt_sigaction) when a process creates its first thread.
    std::thread([] {}).join();
    install_or_exit(filters->event_loop, "event-loop");
    std::thread t([] { [[maybe_unused]] int fd = ::socket(AF_UNIX, SOCK_STREAM, 0); });
    t.join();
    ::_exit(97);
  });
  CHECK(e.signal == SIGSYS);
  INFO("the child's stderr: ", e.err);
  CHECK(e.err.find("called socket") != std::string::npos);
}
