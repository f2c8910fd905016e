// SplitQueue: ring validation, chain walking and the used ring. Every value read from a ring
// is guest data: it is loaded once and checked before use.
#include "pinless/virtio/queue.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <fmt/format.h>

namespace pinless::virtio {
namespace {

template <typename T>
T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);  // x86_64 and arm64 hosts are little-endian, as virtio 1.x is
  return v;
}
template <typename T>
void store_le(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

// Ring indices are shared with a guest running concurrently: read and publish them with
// acquire/release ordering so the entries they cover are seen complete.
uint16_t load_index(const uint8_t* p) {
  return __atomic_load_n(reinterpret_cast<const uint16_t*>(p), __ATOMIC_ACQUIRE);
}
void store_index(uint8_t* p, uint16_t v) { __atomic_store_n(reinterpret_cast<uint16_t*>(p), v, __ATOMIC_RELEASE); }

Result<std::span<uint8_t>> ring(const GuestRam& ram, const char* what, Gpa gpa, uint64_t bytes, uint64_t align) {
  if (!gpa.aligned(align))
    return fail("virtqueue", EINVAL, fmt::format("{} ring at {:#x} is not {}-byte aligned", what, gpa.value(), align));
  auto s = ram.slice(gpa, bytes);
  if (!s) {
    return fail("virtqueue", EFAULT,
                fmt::format("{} ring {:#x}+{:#x} is not in guest RAM", what, gpa.value(), bytes));
  }
  return *s;
}

}  // namespace

uint64_t Chain::readable_bytes() const {
  uint64_t n = 0;
  for (auto b : readable) n += b.size();
  return n;
}

uint64_t Chain::writable_bytes() const {
  uint64_t n = 0;
  for (auto b : writable) n += b.size();
  return n;
}

size_t Chain::gather(std::span<uint8_t> out) const {
  size_t done = 0;
  for (auto b : readable) {
    if (done == out.size()) break;
    size_t n = std::min(b.size(), out.size() - done);
    std::memcpy(out.data() + done, b.data(), n);
    done += n;
  }
  return done;
}

size_t Chain::scatter(std::span<const uint8_t> in) const {
  size_t done = 0;
  for (auto b : writable) {
    if (done == in.size()) break;
    size_t n = std::min(b.size(), in.size() - done);
    std::memcpy(b.data(), in.data() + done, n);
    done += n;
  }
  return done;
}

Result<SplitQueue> SplitQueue::create(const GuestRam& ram, const QueueLayout& l) {
  if (l.size == 0 || l.size > kMaxQueueSize || !std::has_single_bit(l.size))
    return fail("virtqueue", EINVAL, fmt::format("queue size {} is not a power of two in 1..{}", l.size, kMaxQueueSize));
  auto desc = PINLESS_TRY(ring(ram, "descriptor", l.desc, QueueLayout::desc_bytes(l.size), 16));
  auto driver = PINLESS_TRY(ring(ram, "driver", l.driver, QueueLayout::driver_bytes(l.size), 2));
  auto device = PINLESS_TRY(ring(ram, "device", l.device, QueueLayout::device_bytes(l.size), 4));
  SplitQueue q(ram, l, desc, driver, device);
  // Resume where the device ring is (0 after the driver zeroed it, as Linux does).
  q.next_used_ = load_index(device.data() + 2);
  q.next_avail_ = q.next_used_;
  return q;
}

Result<std::optional<Chain>> SplitQueue::pop() {
  uint16_t avail = load_index(driver_.data() + 2);
  uint16_t pending = uint16_t(avail - next_avail_);
  if (pending == 0) return std::optional<Chain>{};
  if (pending > layout_.size) {
    return fail("virtqueue", EINVAL,
                fmt::format("driver index {} is {} ahead of the device's {} (queue size {})", avail, pending,
                            next_avail_, layout_.size));
  }
  uint16_t slot = next_avail_ & (layout_.size - 1);
  uint16_t head = load_le<uint16_t>(driver_.data() + 4 + 2 * slot);
  Chain c = PINLESS_TRY(walk(head));
  next_avail_++;
  popped_++;
  return std::optional<Chain>(std::move(c));
}

Result<Chain> SplitQueue::walk(uint16_t head) const {
  Chain c;
  c.head = head;
  uint16_t index = head;
  uint64_t total = 0;
  for (uint32_t n = 0;; ++n) {
    if (index >= layout_.size)
      return fail("virtqueue", EINVAL, fmt::format("chain {}: descriptor index {} >= queue size {}", head, index, layout_.size));
    if (n == layout_.size)
      return fail("virtqueue", EINVAL, fmt::format("chain {}: longer than the queue ({}): a loop", head, layout_.size));
    const uint8_t* d = desc_.data() + 16ull * index;
    uint64_t addr = load_le<uint64_t>(d);
    uint32_t len = load_le<uint32_t>(d + 8);
    uint16_t flags = load_le<uint16_t>(d + 12);
    uint16_t next = load_le<uint16_t>(d + 14);
    if (flags & kDescFlagIndirect)
      return fail("virtqueue", EINVAL, fmt::format("chain {}: INDIRECT descriptor (not offered)", head));
    total += len;
    if (total > UINT32_MAX)
      return fail("virtqueue", EINVAL, fmt::format("chain {}: total length over 4 GiB", head));
    auto buf = ram_->slice(Gpa(addr), len);
    if (!buf) {
      return fail("virtqueue", EFAULT,
                  fmt::format("chain {}: descriptor {} buffer {:#x}+{:#x} is not in guest RAM", head, index, addr, len));
    }
    if (flags & kDescFlagWrite) {
      c.writable.push_back(*buf);
    } else {
      if (!c.writable.empty())
        return fail("virtqueue", EINVAL, fmt::format("chain {}: a device-readable buffer after a writable one", head));
      c.readable.push_back(*buf);
    }
    if (!(flags & kDescFlagNext)) return c;
    index = next;
  }
}

void SplitQueue::push(uint16_t head, uint32_t written) {
  uint8_t* e = device_.data() + 4 + 8ull * (next_used_ & (layout_.size - 1));
  store_le<uint32_t>(e, head);
  store_le<uint32_t>(e + 4, written);
  next_used_++;
  store_index(device_.data() + 2, next_used_);
}

bool SplitQueue::wants_interrupt() const {
  // Order the used index store before reading the driver's flags (virtio 1.x, 2.7.7.2).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return (load_le<uint16_t>(driver_.data()) & kAvailFlagNoInterrupt) == 0;
}

}  // namespace pinless::virtio
