// PinlessProcess: a `pinless run` child for testbed programs that drive the pinless binary
// from outside (as a manager would): fork+exec with stdin from /dev/null, stdout and stderr
// into files, SIGKILLed when this program dies; watched through those files and /proc/PID.
// Owns the child (the destructor kills it if it still runs). Single-threaded use.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "testbed_util.h"

namespace pinless::testbed {

// Calls done() until it returns true or timeout_ms pass, napping 20 us .. 2 ms in between:
// L1 has one CPU, and the process being waited for needs it. Returns done()'s last answer.
template <class F>
bool poll_until(F done, int timeout_ms) {
  uint64_t deadline = now_us() + uint64_t(timeout_ms) * 1000;
  useconds_t nap = 20;
  while (!done()) {
    if (now_us() >= deadline) return false;
    usleep(nap);
    nap = std::min<useconds_t>(nap * 2, 2000);
  }
  return true;
}

// The last `lines` lines of a file (all of it if shorter).
std::string file_tail(const std::string& path, size_t lines);

class PinlessProcess {
 public:
  PinlessProcess() = default;
  PinlessProcess(const PinlessProcess&) = delete;
  PinlessProcess& operator=(const PinlessProcess&) = delete;
  ~PinlessProcess() { kill_now(); }

  // Starts argv (argv[0] is the program path). Empty on success, else what failed.
  std::string start(const std::vector<std::string>& argv, const std::string& out_path, const std::string& err_path);
  // False once the child has exited (it is reaped then; status() says how).
  bool running();
  pid_t pid() const { return pid_; }
  int status() const { return status_; }
  std::string status_text() const;
  const std::string& out_path() const { return out_; }
  const std::string& err_path() const { return err_; }

  // The line of `path` that holds `needle`, waiting up to timeout_ms while the child runs;
  // empty if it did not appear (running() tells whether the child exited meanwhile).
  std::string wait_line(const std::string& path, const std::string& needle, int timeout_ms);
  // "Key:  N kB" of /proc/PID/status (VmPin, VmLck, ...); -1 if absent or the child is gone.
  long status_kb(const char* key) const;
  // Maps the child's memfd whose name contains `name` (found in /proc/PID/fd) MAP_SHARED,
  // `size` bytes: the same pages the child sees. nullptr and *error on failure.
  uint8_t* map_memfd(const char* name, uint64_t size, std::string* error) const;
  // SIGTERM, then waits up to timeout_ms for the exit (SIGKILL after that). True if it exited
  // in time; *ms is how long it took.
  bool terminate(int timeout_ms, uint64_t* ms);
  void kill_now();

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  std::string out_, err_;
};

}  // namespace pinless::testbed
