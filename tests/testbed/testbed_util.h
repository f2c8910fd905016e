// Helpers shared by the testbed self-test programs (they run inside L1, see
// tests/testbed/README.md): reporting (ok / FAIL / SKIP with exit 0 / 1 / 77),
// an owning fd, a timer, /proc/self/status counters, and the edu BDF list.
// Deliberately standalone (no pinless libraries): these programs prove what the
// kernel does, independently of the code under test. Single-threaded use.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace pinless::testbed {

inline const char* g_prog = "testbed";

inline constexpr int kExitSkip = 77;

[[noreturn, gnu::format(printf, 1, 2)]] inline void fail(const char* fmt, ...) {
  std::fprintf(stdout, "%s: FAIL: ", g_prog);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stdout, fmt, ap);
  va_end(ap);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  std::exit(1);
}

[[noreturn, gnu::format(printf, 1, 2)]] inline void skip(const char* fmt, ...) {
  std::fprintf(stdout, "%s: SKIP: ", g_prog);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stdout, fmt, ap);
  va_end(ap);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  std::exit(kExitSkip);
}

[[gnu::format(printf, 1, 2)]] inline void info(const char* fmt, ...) {
  std::fprintf(stdout, "%s: ", g_prog);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stdout, fmt, ap);
  va_end(ap);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// errno text for messages.
inline const char* err() { return std::strerror(errno); }

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

inline uint64_t now_us() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000u + uint64_t(ts.tv_nsec) / 1000u;
}

// A "Key:   N kB" line of /proc/self/status (VmLck, VmPin, ...); -1 if absent.
inline long proc_status_kb(const char* key) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long v = -1;
  size_t klen = std::strlen(key);
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, key, klen) == 0 && line[klen] == ':') {
      v = std::strtol(line + klen + 1, nullptr, 10);
      break;
    }
  }
  std::fclose(f);
  return v;
}

inline std::string read_file(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return {};
  std::string s;
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  std::fclose(f);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

inline bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// The edu device to use: argv[1] if given, else the first of $PINLESS_EDU_BDFS.
inline std::string edu_bdf(int argc, char** argv) {
  if (argc > 1) return argv[1];
  const char* env = std::getenv("PINLESS_EDU_BDFS");
  if (!env || !*env)
    fail("no edu device: PINLESS_EDU_BDFS is empty and no BDF argument given "
         "(run inside scripts/testbed with --edu N >= 1)");
  std::istringstream in(env);
  std::string first;
  in >> first;
  return first;
}

}  // namespace pinless::testbed
