// Kernel models for the iommu unit tests, scripted on FakeSys: a small iommufd (objects,
// IOAS mappings with the real MAP/UNMAP rules, IOVA ranges, options, HWPT, fault queue) and
// the fault fd's read/write side. They check the structs the code passes (size fields, flags) and
// count live objects and mappings, so tests can assert that error paths leave nothing behind.
// Errors can be injected per ioctl number. Thread-compatible.
#pragma once

#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <vector>

#include "fakes/fake_sys.h"
#include "pinless/iommu/uapi/iommufd.h"

namespace pinless::testing {

class FakeIommufd {
 public:
  struct Map {
    uint64_t len;
    uint64_t va;
    uint32_t flags;
  };

  explicit FakeIommufd(FakeSys& sys) : sys_(sys) {
    sys.on_open("/dev/iommu", [this](const char*, int) { return fd_ = sys_.new_fd(); });
    sys.on_ioctl(IOMMU_IOAS_ALLOC, [this](int, unsigned long r, void* a) {
      auto* p = static_cast<iommu_ioas_alloc*>(a);
      if (int e = check(r, p->size, sizeof(*p))) return e;
      p->out_ioas_id = alloc("ioas");
      return 0;
    });
    sys.on_ioctl(IOMMU_DESTROY, [this](int, unsigned long r, void* a) {
      auto* p = static_cast<iommu_destroy*>(a);
      if (int e = check(r, p->size, sizeof(*p))) return e;
      if (!objects.count(p->id)) return -ENOENT;
      if (objects[p->id] == "fault" && fault_fd_open(p->id)) return -EBUSY;
      objects.erase(p->id);
      destroyed.push_back(p->id);
      return 0;
    });
    sys.on_ioctl(IOMMU_IOAS_MAP, [this](int, unsigned long r, void* a) {
      auto* p = static_cast<iommu_ioas_map*>(a);
      if (int e = check(r, p->size, sizeof(*p))) return e;
      last_map = *p;
      if (!(p->flags & (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE))) return -EINVAL;
      if (!(p->flags & IOMMU_IOAS_MAP_FIXED_IOVA)) return -EINVAL;  // pinless always fixes the IOVA
      if (p->length == 0 || p->iova % 4096 || p->length % 4096) return -EINVAL;
      auto& m = maps[p->ioas_id];
      auto it = m.lower_bound(p->iova);
      if (it != m.end() && it->first < p->iova + p->length) return -EEXIST;
      if (it != m.begin() && std::prev(it)->first + std::prev(it)->second.len > p->iova) return -EEXIST;
      m[p->iova] = {p->length, p->user_va, p->flags};
      return 0;
    });
    sys.on_ioctl(IOMMU_IOAS_UNMAP, [this](int, unsigned long r, void* a) {
      auto* p = static_cast<iommu_ioas_unmap*>(a);
      if (int e = check(r, p->size, sizeof(*p))) return e;
      // As iommufd: every mapping wholly inside the range goes; one that sticks out of it
      // fails the call (ENOENT, nothing removed: areas are never split), as does a range
      // with no mapping in it.
      auto& m = maps[p->ioas_id];
      uint64_t end = p->iova + p->length;
      auto first = m.lower_bound(p->iova);
      if (first != m.begin() && std::prev(first)->first + std::prev(first)->second.len > p->iova) return -ENOENT;
      auto last = first;
      while (last != m.end() && last->first < end) {
        if (last->first + last->second.len > end) return -ENOENT;
        ++last;
      }
      if (first == last) return -ENOENT;
      m.erase(first, last);
      return 0;
    });
    sys.on_ioctl(IOMMU_IOAS_COPY, [this](int, unsigned long r, void* a) {
      auto* p = static_cast<iommu_ioas_copy*>(a);
      if (int e = check(r, p->size, sizeof(*p))) return e;
      // Any part of one source mapping (the kernel also chains adjacent ones; pinless never
      // needs that); a hole is ENOENT. The destination must be free, as for MAP.
      auto& src = maps[p->src_ioas_id];
      auto it = src.upper_bound(p->src_iova);
      if (it == src.begin()) return -ENOENT;
      --it;
      if (p->length == 0 || p->src_iova + p->length > it->first + it->second.len) return -ENOENT;
      auto& dst = maps[p->dst_ioas_id];
      auto d = dst.lower_bound(p->dst_iova);
      if (d != dst.end() && d->first < p->dst_iova + p->length) return -EEXIST;
      if (d != dst.begin() && std::prev(d)->first + std::prev(d)->second.len > p->dst_iova) return -EEXIST;
      dst[p->dst_iova] = {p->length, it->second.va + (p->src_iova - it->first), p->flags};
      copies++;
      return 0;
    });
    sys.on_ioctl(IOMMU_IOAS_IOVA_RANGES, [this](int, unsigned long r, void* a) {
      auto* p = static_cast<iommu_ioas_iova_ranges*>(a);
      if (int e = check(r, p->size, sizeof(*p))) return e;
      range_calls++;
      uint32_t have = p->num_iovas;
      p->num_iovas = static_cast<uint32_t>(ranges.size());
      if (have < ranges.size()) return -EMSGSIZE;
      std::memcpy(reinterpret_cast<void*>(p->allowed_iovas), ranges.data(), ranges.size() * sizeof(ranges[0]));
      p->out_iova_alignment = 4096;
      return 0;
    });
    sys.on_ioctl(IOMMU_OPTION, [this](int, unsigned long r, void* a) {
      auto* p = static_cast<iommu_option*>(a);
      if (int e = check(r, p->size, sizeof(*p))) return e;
      last_option = *p;
      uint64_t& v = options[{p->option_id, p->object_id}];
      if (p->op == IOMMU_OPTION_OP_GET) p->val64 = v;
      else v = p->val64;
      return 0;
    });
    sys.on_ioctl(IOMMU_HWPT_ALLOC, [this](int, unsigned long r, void* a) {
      auto* p = static_cast<iommu_hwpt_alloc*>(a);
      if (int e = check(r, p->size, sizeof(*p))) return e;
      last_hwpt = *p;
      if ((p->flags & IOMMU_HWPT_FAULT_ID_VALID) && (!objects.count(p->fault_id) || objects[p->fault_id] != "fault")) {
        return -ENOENT;
      }
      p->out_hwpt_id = alloc("hwpt");
      return 0;
    });
    sys.on_ioctl(IOMMU_FAULT_QUEUE_ALLOC, [this](int, unsigned long r, void* a) {
      auto* p = static_cast<iommu_fault_alloc*>(a);
      if (int e = check(r, p->size, sizeof(*p))) return e;
      p->out_fault_id = alloc("fault");
      p->out_fault_fd = static_cast<uint32_t>(sys_.new_fd());
      fault_fds[p->out_fault_id] = static_cast<int>(p->out_fault_fd);
      return 0;
    });
  }

  // Makes the next ioctl `request` fail with -err (once).
  void fail_next(unsigned long request, int err) { fail_[request] = err; }
  size_t live_objects() const { return objects.size(); }
  size_t live_maps() const {
    size_t n = 0;
    for (const auto& [_, m] : maps) n += m.size();
    return n;
  }
  int fd() const { return fd_; }

  std::map<uint32_t, std::string> objects;
  std::vector<uint32_t> destroyed;
  std::map<uint32_t, std::map<uint64_t, Map>> maps;  // ioas -> iova -> mapping
  std::vector<iommu_iova_range> ranges{{0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}};
  std::map<std::pair<uint32_t, uint32_t>, uint64_t> options;
  std::map<uint32_t, int> fault_fds;
  iommu_ioas_map last_map{};
  iommu_option last_option{};
  iommu_hwpt_alloc last_hwpt{};
  int range_calls = 0;
  int copies = 0;

 private:
  int check(unsigned long request, uint32_t size, size_t want) {
    if (auto it = fail_.find(request); it != fail_.end()) {
      int e = it->second;
      fail_.erase(it);
      return -e;
    }
    return size == want ? 0 : -EINVAL;
  }
  uint32_t alloc(const char* kind) {
    objects[next_id_] = kind;
    return next_id_++;
  }
  bool fault_fd_open(uint32_t id) {
    // FakeSys forgets closed fds: probe by closing a copy is not possible, so track here.
    auto it = fault_fds.find(id);
    if (it == fault_fds.end()) return false;
    for (const auto& c : sys_.calls()) {
      if (c.what == "close" && c.fd == it->second) return false;
    }
    return true;
  }

  FakeSys& sys_;
  std::map<unsigned long, int> fail_;
  int fd_ = -1;
  uint32_t next_id_ = 1;
};

// The kernel side of an iommufd fault fd: queued groups, read() hands out whole groups only,
// write() takes 8-byte responses for groups handed out. Installs itself as the FakeSys
// read/write handler.
struct FakeFaultFd {
  // One read+write fault record at `addr`, the last of its group unless `last` is false.
  static iommu_hwpt_pgfault record(uint32_t cookie, uint64_t addr, bool last = true, uint32_t dev_id = 3) {
    iommu_hwpt_pgfault r{};
    r.flags = last ? IOMMU_PGFAULT_FLAGS_LAST_PAGE : 0;
    r.dev_id = dev_id;
    r.perm = IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE;
    r.addr = addr;
    r.cookie = cookie;
    return r;
  }

  std::deque<std::vector<iommu_hwpt_pgfault>> groups;
  std::vector<iommu_hwpt_page_response> answers;
  std::set<uint32_t> waiting;
  int reads = 0, writes = 0;
  std::set<uint32_t> refuse;  // cookies the kernel rejects with EINVAL

  void install(FakeSys& sys) {
    sys.on_read([this](int, void* buf, size_t n, off_t) -> ssize_t {
      reads++;
      if (n % sizeof(iommu_hwpt_pgfault) != 0) return -ESPIPE;
      size_t done = 0;
      while (!groups.empty() && done + groups.front().size() * 40 <= n) {
        for (auto& r : groups.front()) {
          std::memcpy(static_cast<uint8_t*>(buf) + done, &r, 40);
          done += 40;
        }
        waiting.insert(groups.front().front().cookie);
        groups.pop_front();
      }
      if (done == 0 && !groups.empty()) return -EINVAL;  // first group does not fit
      return static_cast<ssize_t>(done);
    });
    sys.on_write([this](int, void* buf, size_t n, off_t) -> ssize_t {
      writes++;
      if (n % 8 != 0) return -ESPIPE;
      size_t done = 0;
      for (; done < n; done += 8) {
        iommu_hwpt_page_response r;
        std::memcpy(&r, static_cast<uint8_t*>(buf) + done, 8);
        if (!waiting.count(r.cookie) || refuse.count(r.cookie) || r.code > 1) {
          return done ? static_cast<ssize_t>(done) : -EINVAL;
        }
        waiting.erase(r.cookie);
        answers.push_back(r);
      }
      return static_cast<ssize_t>(done);
    });
  }
};

}  // namespace pinless::testing
