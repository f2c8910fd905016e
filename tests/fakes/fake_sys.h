// FakeSys: a scripted stand-in for the kernel behind the Sys seam.
// Tests register handlers for paths (open) and ioctl request numbers; every call is
// recorded so tests can assert on order and arguments. Unscripted opens fail with ENOENT,
// unscripted ioctls with ENOTTY, so a test that forgets to script a call fails loudly.
// mmap returns real anonymous memory (tests may read and write it). eventfd and
// memfd_create return real kernel objects, since they need no privileges.
// Thread-compatible.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "pinless/base/sys.h"

namespace pinless::testing {

class FakeSys : public Sys {
 public:
  using OpenFn = std::function<int(const char* path, int flags)>;
  // Receives the fd, request and argument; returns >= 0 or -errno.
  using IoctlFn = std::function<int(int fd, unsigned long request, void* arg)>;
  using RwFn = std::function<ssize_t(int fd, void* buf, size_t n, off_t off)>;

  struct Call {
    std::string what;  // "open", "ioctl", "mmap", "close", ...
    int fd = -1;
    unsigned long request = 0;
    std::string path;
  };

  ~FakeSys() override;

  // open(path) returns a fresh fake fd (>= 1000) unless `fn` says otherwise.
  void on_open(const std::string& path, OpenFn fn = nullptr);
  void on_ioctl(unsigned long request, IoctlFn fn);
  // read/pread and write/pwrite on fake fds go to these (real fds pass through).
  void on_read(RwFn fn) { read_fn_ = std::move(fn); }
  void on_write(RwFn fn) { write_fn_ = std::move(fn); }
  // Makes the next mmap fail with `err`.
  void fail_next_mmap(int err) { mmap_err_ = err; }

  // Read it once the threads that make calls (vCPU threads, an event loop) have stopped.
  const std::vector<Call>& calls() const { return calls_; }
  size_t count(unsigned long request) const;
  size_t count_what(const std::string& what) const;
  // Fake fds currently open (opened and not closed): a leak check for tests.
  size_t open_fds() const { return open_.size(); }
  // Anonymous mappings handed out and not yet unmapped.
  size_t live_mappings() const { return mappings_.size(); }
  // A live mapping of exactly `len` bytes (e.g. a vCPU's kvm_run), or nullptr.
  void* mapping_of_size(size_t len) const;
  int new_fd();

  int open(const char* path, int flags, mode_t mode) override;
  int close(int fd) override;
  int ioctl(int fd, unsigned long request, void* arg) override;
  int ioctl_int(int fd, unsigned long request, unsigned long arg) override;
  void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off, int* err) override;
  int munmap(void* addr, size_t len) override;
  ssize_t read(int fd, void* buf, size_t n) override;
  ssize_t write(int fd, const void* buf, size_t n) override;
  ssize_t pread(int fd, void* buf, size_t n, off_t off) override;
  ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) override;
  int eventfd(unsigned int initval, int flags) override;
  int memfd_create(const char* name, unsigned int flags) override;
  int ftruncate(int fd, off_t len) override;

 private:
  bool is_fake(int fd) const { return open_.count(fd) != 0; }

  std::map<std::string, OpenFn> opens_;
  std::map<unsigned long, IoctlFn> ioctls_;
  RwFn read_fn_;
  RwFn write_fn_;
  std::map<int, std::string> open_;
  std::map<void*, size_t> mappings_;
  // Calls come from several threads at once (vCPU threads and the event loop of a whole VM).
  void record(Call c) {
    std::lock_guard lock(calls_mu_);
    calls_.push_back(std::move(c));
  }
  std::mutex calls_mu_;
  std::vector<Call> calls_;
  int next_fd_ = 1000;
  int mmap_err_ = 0;
};

}  // namespace pinless::testing
