#include "pinless_process.h"

#include <dirent.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

namespace pinless::testbed {

std::string file_tail(const std::string& path, size_t lines) {
  std::string s = read_file(path);
  size_t at = s.size();
  for (size_t n = 0; n < lines && at != std::string::npos && at > 0; ++n) at = s.rfind('\n', at - 1);
  return at == std::string::npos || at == 0 ? s : s.substr(at + 1);
}

std::string PinlessProcess::start(const std::vector<std::string>& argv, const std::string& out_path,
                                  const std::string& err_path) {
  out_ = out_path;
  err_ = err_path;
  std::vector<std::string> args = argv;
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  // Gone before the child exists: a file left by an earlier run under the same name must not
  // answer wait_line() before the child has truncated it.
  ::unlink(out_.c_str());
  ::unlink(err_.c_str());
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return std::string("fork: ") + err();
  if (pid == 0) {
    // Dies with this program, whatever way it ends (the check closes the race with prctl).
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent) _exit(125);
    int o = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int in = ::open("/dev/null", O_RDONLY);
    if (o < 0 || e < 0 || in < 0 || dup2(in, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0) _exit(126);
    execv(cargs[0], cargs.data());
    std::fprintf(stderr, "exec %s: %s\n", cargs[0], std::strerror(errno));
    _exit(127);
  }
  pid_ = pid;
  status_ = -1;
  return {};
}

bool PinlessProcess::running() {
  if (pid_ < 0) return false;
  if (waitpid(pid_, &status_, WNOHANG) != pid_) return true;
  pid_ = -1;
  return false;
}

std::string PinlessProcess::status_text() const {
  if (pid_ >= 0 || status_ < 0) return "still running";
  if (WIFEXITED(status_)) return "exit status " + std::to_string(WEXITSTATUS(status_));
  if (WIFSIGNALED(status_)) return std::string("killed by signal ") + strsignal(WTERMSIG(status_));
  return "wait status " + std::to_string(status_);
}

std::string PinlessProcess::wait_line(const std::string& path, const std::string& needle, int timeout_ms) {
  std::string line;
  poll_until(
      [&] {
        std::string s = read_file(path);
        size_t at = s.find(needle);
        if (at == std::string::npos) return !running();
        size_t b = s.rfind('\n', at);
        b = b == std::string::npos ? 0 : b + 1;
        line = s.substr(b, s.find('\n', at) - b);
        return true;
      },
      timeout_ms);
  return line;
}

long PinlessProcess::status_kb(const char* key) const {
  if (pid_ < 0) return -1;
  std::string s = "\n" + read_file("/proc/" + std::to_string(pid_) + "/status");
  size_t at = s.find("\n" + std::string(key) + ":");
  return at == std::string::npos ? -1 : std::strtol(s.c_str() + at + std::strlen(key) + 2, nullptr, 10);
}

uint8_t* PinlessProcess::map_memfd(const char* name, uint64_t size, std::string* error) const {
  std::string dir = "/proc/" + std::to_string(pid_) + "/fd", found;
  DIR* d = opendir(dir.c_str());
  if (!d) return *error = "opendir " + dir + ": " + err(), nullptr;
  while (dirent* e = readdir(d)) {
    char target[256] = {};
    std::string p = dir + "/" + e->d_name;
    if (readlink(p.c_str(), target, sizeof target - 1) > 0 && std::strstr(target, "memfd:") && std::strstr(target, name))
      found = p;
  }
  closedir(d);
  if (found.empty()) return *error = std::string("no memfd '") + name + "' among the fds in " + dir, nullptr;
  // Opening /proc/PID/fd/N opens the memfd itself, not a copy.
  Fd fd(::open(found.c_str(), O_RDWR | O_CLOEXEC));
  struct stat st{};
  if (!fd.valid() || fstat(fd.get(), &st) < 0) return *error = "open " + found + ": " + err(), nullptr;
  if (uint64_t(st.st_size) < size)
    return *error = found + " is " + std::to_string(st.st_size) + " bytes, want " + std::to_string(size), nullptr;
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return *error = "mmap " + found + ": " + err(), nullptr;
  return static_cast<uint8_t*>(p);
}

bool PinlessProcess::terminate(int timeout_ms, uint64_t* ms) {
  uint64_t t0 = now_us();
  if (pid_ >= 0) kill(pid_, SIGTERM);
  bool gone = poll_until([&] { return !running(); }, timeout_ms);
  *ms = (now_us() - t0) / 1000;
  if (!gone) kill_now();
  return gone;
}

void PinlessProcess::kill_now() {
  if (pid_ < 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, &status_, 0);
  pid_ = -1;
}

}  // namespace pinless::testbed
