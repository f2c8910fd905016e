// Strong address and size types. A guest-physical address, an I/O virtual address and a
// host-virtual address are different things; mixing them up is a compile error, so
// map(Iova, Hva, size) cannot be called with swapped arguments. Value types.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>

namespace pinless {

template <typename Tag>
class Address {
 public:
  constexpr Address() = default;
  constexpr explicit Address(uint64_t v) : v_(v) {}
  constexpr uint64_t value() const { return v_; }
  constexpr Address operator+(uint64_t off) const { return Address(v_ + off); }
  constexpr Address operator-(uint64_t off) const { return Address(v_ - off); }
  constexpr uint64_t operator-(Address o) const { return v_ - o.v_; }
  constexpr Address& operator+=(uint64_t off) { v_ += off; return *this; }
  constexpr auto operator<=>(const Address&) const = default;
  constexpr Address align_down(uint64_t a) const { return Address(v_ & ~(a - 1)); }
  constexpr Address align_up(uint64_t a) const { return Address((v_ + a - 1) & ~(a - 1)); }
  constexpr bool aligned(uint64_t a) const { return (v_ & (a - 1)) == 0; }

 private:
  uint64_t v_ = 0;
};

struct GpaTag {};
struct IovaTag {};
struct HvaTag {};
using Gpa = Address<GpaTag>;    // guest-physical address
using Iova = Address<IovaTag>;  // I/O virtual address (what a device puts on the bus)
using Hva = Address<HvaTag>;    // host-virtual address in this process

inline Hva hva_of(const void* p) { return Hva(reinterpret_cast<uint64_t>(p)); }
template <typename T = void>
T* ptr_of(Hva h) { return reinterpret_cast<T*>(h.value()); }

// A count of pages of a stated size; never confused with bytes.
class Pages {
 public:
  constexpr Pages() = default;
  constexpr explicit Pages(uint64_t n) : n_(n) {}
  constexpr uint64_t count() const { return n_; }
  constexpr uint64_t bytes(uint64_t page_size) const { return n_ * page_size; }
  constexpr auto operator<=>(const Pages&) const = default;

 private:
  uint64_t n_ = 0;
};

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;
constexpr uint64_t kPageSize = 4096;

constexpr uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }
constexpr uint64_t align_down(uint64_t v, uint64_t a) { return v & ~(a - 1); }

// Half-open range [start, start + size) of some address kind.
template <typename A>
struct Range {
  A start;
  uint64_t size = 0;
  constexpr A end() const { return start + size; }
  constexpr bool contains(A a) const { return a >= start && a - start < size; }
  constexpr bool contains(A a, uint64_t len) const {
    return contains(a) && len <= size - (a - start);
  }
  constexpr bool overlaps(const Range& o) const {
    return start < o.end() && o.start < end();
  }
};

}  // namespace pinless

template <typename Tag>
struct std::hash<pinless::Address<Tag>> {
  size_t operator()(pinless::Address<Tag> a) const noexcept { return std::hash<uint64_t>{}(a.value()); }
};
