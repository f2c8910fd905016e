#include "pinless/vmm/acpi/aml.h"

#include <cstdlib>
#include <string>

#include "pinless/base/log.h"

namespace pinless::vmm::acpi::aml {
namespace {

constexpr uint8_t kZeroOp = 0x00, kOneOp = 0x01, kOnesOp = 0xff;
constexpr uint8_t kBytePrefix = 0x0a, kWordPrefix = 0x0b, kDWordPrefix = 0x0c,
                  kQWordPrefix = 0x0e, kStringPrefix = 0x0d;
constexpr uint8_t kNameOp = 0x08, kScopeOp = 0x10, kBufferOp = 0x11, kPackageOp = 0x12,
                  kMethodOp = 0x14, kReturnOp = 0xa4, kExtOpPrefix = 0x5b, kDeviceOp = 0x82,
                  kNotifyOp = 0x86;
constexpr uint8_t kRootChar = '\\', kParentChar = '^', kDualNamePrefix = 0x2e,
                  kMultiNamePrefix = 0x2f, kNullName = 0x00;

// Resource descriptor tags (ACPI 6.4 section 6.4).
constexpr uint8_t kIrqNoFlagsTag = 0x22, kIoTag = 0x47, kEndTag = 0x79;
constexpr uint8_t kMemory32FixedTag = 0x86, kDWordAddressTag = 0x87, kWordAddressTag = 0x88,
                  kExtendedInterruptTag = 0x89, kQWordAddressTag = 0x8a;
// Extended Interrupt flags (6.4.3.6): bit 0 consumer, 1 edge, 2 active low, 3 shared, 4 wake.
constexpr uint8_t kIntConsumer = 0x01, kIntEdge = 0x02, kIntActiveLow = 0x04;
constexpr uint8_t kSpaceMemory = 0, kSpaceIo = 1, kSpaceBus = 2;
// General flags: ResourceProducer (bit 0 clear), PosDecode, MinFixed (bit 2), MaxFixed (bit 3).
constexpr uint8_t kProducerFixed = 0x0c;

// A broken internal invariant (our own names and constants), never guest input.
[[noreturn]] void bug(const std::string& what) {
  logger("vmm")->critical("AML builder: {}", what);
  std::abort();
}

void put_le(Bytes& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(uint8_t(v >> (8 * i)));
}

void append(Bytes& out, const Bytes& more) { out.insert(out.end(), more.begin(), more.end()); }

// op, PkgLength, body.
Bytes with_pkg(std::initializer_list<uint8_t> ops, const Bytes& body) {
  Bytes out(ops);
  append(out, pkg_length(body.size()));
  append(out, body);
  return out;
}

Bytes terms_joined(const std::vector<Bytes>& terms) {
  Bytes out;
  for (const auto& t : terms) append(out, t);
  return out;
}

}  // namespace

Bytes pkg_length(size_t content_len) {
  Bytes out;
  if (content_len + 1 <= 0x3f) {
    out.push_back(uint8_t(content_len + 1));
    return out;
  }
  for (size_t n = 2; n <= 4; ++n) {
    size_t total = content_len + n;
    if (total < (size_t(1) << (4 + 8 * (n - 1)))) {
      out.push_back(uint8_t(((n - 1) << 6) | (total & 0x0f)));
      for (size_t i = 1; i < n; ++i) out.push_back(uint8_t(total >> (4 + 8 * (i - 1))));
      return out;
    }
  }
  bug("package of " + std::to_string(content_len) + " bytes is too long for a PkgLength");
}

Bytes name_string(std::string_view path) {
  Bytes out;
  while (!path.empty() && (path.front() == kRootChar || path.front() == kParentChar)) {
    out.push_back(uint8_t(path.front()));
    path.remove_prefix(1);
  }
  std::vector<std::string_view> segs;
  while (!path.empty()) {
    size_t dot = path.find('.');
    segs.push_back(path.substr(0, dot));
    path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
  }
  if (segs.size() == 2) out.push_back(kDualNamePrefix);
  if (segs.size() > 2) {
    if (segs.size() > 255) bug("name with too many segments");
    out.push_back(kMultiNamePrefix);
    out.push_back(uint8_t(segs.size()));
  }
  if (segs.empty()) out.push_back(kNullName);
  for (auto seg : segs) {
    if (seg.empty() || seg.size() > 4) bug("bad name segment '" + std::string(seg) + "'");
    for (size_t i = 0; i < 4; ++i) {
      char c = i < seg.size() ? seg[i] : '_';
      bool ok = (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
      if (!ok) bug("bad name segment '" + std::string(seg) + "'");
      out.push_back(uint8_t(c));
    }
  }
  return out;
}

Bytes integer(uint64_t v) {
  Bytes out;
  if (v == 0) return {kZeroOp};
  if (v == 1) return {kOneOp};
  if (v == ~uint64_t(0)) return {kOnesOp};
  if (v <= 0xff) {
    out.push_back(kBytePrefix);
    put_le(out, v, 1);
  } else if (v <= 0xffff) {
    out.push_back(kWordPrefix);
    put_le(out, v, 2);
  } else if (v <= 0xffffffff) {
    out.push_back(kDWordPrefix);
    put_le(out, v, 4);
  } else {
    out.push_back(kQWordPrefix);
    put_le(out, v, 8);
  }
  return out;
}

Bytes string(std::string_view s) {
  Bytes out{kStringPrefix};
  for (char c : s) {
    if (c == '\0' || uint8_t(c) > 0x7f) bug("AML strings are 7-bit ASCII without NUL");
    out.push_back(uint8_t(c));
  }
  out.push_back(0);
  return out;
}

Bytes eisa_id(std::string_view id) {
  auto hex = [&](char c) -> uint32_t {
    if (c >= '0' && c <= '9') return uint32_t(c - '0');
    if (c >= 'A' && c <= 'F') return uint32_t(c - 'A' + 10);
    bug("bad EISA id '" + std::string(id) + "'");
  };
  if (id.size() != 7) bug("bad EISA id '" + std::string(id) + "'");
  uint32_t v = 0;
  for (int i = 0; i < 3; ++i) {
    if (id[i] < 'A' || id[i] > 'Z') bug("bad EISA id '" + std::string(id) + "'");
    v = (v << 5) | uint32_t(id[i] - '@');
  }
  for (int i = 3; i < 7; ++i) v = (v << 4) | hex(id[i]);
  // The compressed id is stored big-endian in a DWord integer.
  uint32_t be = __builtin_bswap32(v);
  Bytes out{kDWordPrefix};
  put_le(out, be, 4);
  return out;
}

Bytes buffer(std::span<const uint8_t> bytes) {
  Bytes body = integer(bytes.size());
  body.insert(body.end(), bytes.begin(), bytes.end());
  return with_pkg({kBufferOp}, body);
}

Bytes package(const std::vector<Bytes>& elements) {
  if (elements.size() > 255) bug("package with more than 255 elements");
  Bytes body{uint8_t(elements.size())};
  append(body, terms_joined(elements));
  return with_pkg({kPackageOp}, body);
}

Bytes name(std::string_view path, const Bytes& value) {
  Bytes out{kNameOp};
  append(out, name_string(path));
  append(out, value);
  return out;
}

Bytes scope(std::string_view path, const std::vector<Bytes>& terms) {
  Bytes body = name_string(path);
  append(body, terms_joined(terms));
  return with_pkg({kScopeOp}, body);
}

Bytes device(std::string_view path, const std::vector<Bytes>& terms) {
  Bytes body = name_string(path);
  append(body, terms_joined(terms));
  return with_pkg({kExtOpPrefix, kDeviceOp}, body);
}

Bytes method(std::string_view path, uint8_t arg_count, bool serialized,
             const std::vector<Bytes>& terms) {
  if (arg_count > 7) bug("methods take at most 7 arguments");
  Bytes body = name_string(path);
  body.push_back(uint8_t(arg_count | (serialized ? 0x08 : 0)));
  append(body, terms_joined(terms));
  return with_pkg({kMethodOp}, body);
}

Bytes return_value(const Bytes& value) {
  Bytes out{kReturnOp};
  append(out, value);
  return out;
}

Bytes notify(std::string_view path, const Bytes& value) {
  Bytes out{kNotifyOp};
  append(out, name_string(path));  // NotifyObject is a SuperName: here always a NameString
  append(out, value);
  return out;
}

ResourceTemplate& ResourceTemplate::io(uint16_t min, uint16_t max, uint8_t align, uint8_t len) {
  bytes_.push_back(kIoTag);
  bytes_.push_back(0x01);  // 16-bit decode
  put_le(bytes_, min, 2);
  put_le(bytes_, max, 2);
  bytes_.push_back(align);
  bytes_.push_back(len);
  return *this;
}

ResourceTemplate& ResourceTemplate::irq_no_flags(uint8_t irq) {
  if (irq > 15) bug("ISA IRQ out of range");
  bytes_.push_back(kIrqNoFlagsTag);
  put_le(bytes_, 1u << irq, 2);
  return *this;
}

ResourceTemplate& ResourceTemplate::extended_interrupt(uint32_t gsi, Trigger trigger,
                                                        Polarity polarity) {
  bytes_.push_back(kExtendedInterruptTag);
  put_le(bytes_, 6, 2);  // flags, table length, one DWord; no resource source follows
  bytes_.push_back(uint8_t(kIntConsumer | (trigger == Trigger::kEdge ? kIntEdge : 0) |
                           (polarity == Polarity::kActiveLow ? kIntActiveLow : 0)));
  bytes_.push_back(1);  // interrupt table length
  put_le(bytes_, gsi, 4);
  return *this;
}

ResourceTemplate& ResourceTemplate::memory32_fixed(uint32_t base, uint32_t len) {
  bytes_.push_back(kMemory32FixedTag);
  put_le(bytes_, 9, 2);
  bytes_.push_back(0x01);  // read-write
  put_le(bytes_, base, 4);
  put_le(bytes_, len, 4);
  return *this;
}

namespace {
// Word/DWord/QWord address space descriptor: tag, length, type, flags, then granularity,
// min, max, translation and length, each `width` bytes.
void address_space(Bytes& out, uint8_t tag, int width, uint8_t type, uint8_t type_flags,
                   uint64_t min, uint64_t max) {
  if (max < min) bug("address range with max < min");
  out.push_back(tag);
  put_le(out, 3 + 5 * width, 2);
  out.push_back(type);
  out.push_back(kProducerFixed);
  out.push_back(type_flags);
  put_le(out, 0, width);  // granularity
  put_le(out, min, width);
  put_le(out, max, width);
  put_le(out, 0, width);  // translation offset
  put_le(out, max - min + 1, width);
}
}  // namespace

ResourceTemplate& ResourceTemplate::word_bus_number(uint16_t min, uint16_t max) {
  address_space(bytes_, kWordAddressTag, 2, kSpaceBus, 0, min, max);
  return *this;
}

ResourceTemplate& ResourceTemplate::word_io(uint16_t min, uint16_t max) {
  address_space(bytes_, kWordAddressTag, 2, kSpaceIo, 0x03 /* EntireRange */, min, max);
  return *this;
}

// Memory type flags: bit 0 read-write; bits 1-2 0 = non-cacheable, 3 = prefetchable.
ResourceTemplate& ResourceTemplate::dword_memory(uint32_t min, uint32_t max, bool prefetchable) {
  address_space(bytes_, kDWordAddressTag, 4, kSpaceMemory, prefetchable ? 0x07 : 0x01, min, max);
  return *this;
}

ResourceTemplate& ResourceTemplate::qword_memory(uint64_t min, uint64_t max, bool prefetchable) {
  address_space(bytes_, kQWordAddressTag, 8, kSpaceMemory, prefetchable ? 0x07 : 0x01, min, max);
  return *this;
}

Bytes ResourceTemplate::build() const {
  Bytes all = bytes_;
  all.push_back(kEndTag);
  all.push_back(0x00);  // checksum 0: "treat as valid"
  return buffer(all);
}

}  // namespace pinless::vmm::acpi::aml
