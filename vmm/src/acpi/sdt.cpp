#include "pinless/vmm/acpi/sdt.h"

#include <cstdlib>

#include "pinless/base/log.h"

namespace pinless::vmm::acpi {

uint8_t byte_sum(std::span<const uint8_t> bytes) {
  uint8_t sum = 0;
  for (uint8_t b : bytes) sum = uint8_t(sum + b);
  return sum;
}

uint8_t checksum_byte(std::span<const uint8_t> bytes) { return uint8_t(0 - byte_sum(bytes)); }

Sdt::Sdt(std::string_view signature, uint8_t revision) {
  text(signature, 4);
  u32(0);  // length, patched by finish()
  u8(revision);
  u8(0);  // checksum, patched by finish()
  text(kOemId, 6);
  text(kOemTableId, 8);
  u32(kOemRevision);
  text(kCreatorId, 4);
  u32(kCreatorRevision);
}

void Sdt::put(size_t offset, uint64_t v, int n) {
  if (offset + size_t(n) > data_.size()) {
    // Our own table layout, never guest input.
    logger("vmm")->critical("ACPI: field at {} past the end of a {}-byte table", offset, data_.size());
    std::abort();
  }
  for (int i = 0; i < n; ++i) data_[offset + size_t(i)] = uint8_t(v >> (8 * i));
}

Sdt& Sdt::u8(uint8_t v) { return zeros(1), put_u8(size() - 1, v), *this; }
Sdt& Sdt::u16(uint16_t v) { return zeros(2), put_u16(size() - 2, v), *this; }
Sdt& Sdt::u32(uint32_t v) { return zeros(4), put_u32(size() - 4, v), *this; }
Sdt& Sdt::u64(uint64_t v) { return zeros(8), put_u64(size() - 8, v), *this; }

Sdt& Sdt::bytes(std::span<const uint8_t> v) {
  data_.insert(data_.end(), v.begin(), v.end());
  return *this;
}

// Fixed-width identifiers: truncated to `width`, padded with spaces (ACPI OEM ids are
// space padded by convention; signatures are always exactly 4 characters).
Sdt& Sdt::text(std::string_view s, size_t width) {
  for (size_t i = 0; i < width; ++i) data_.push_back(i < s.size() ? uint8_t(s[i]) : uint8_t(' '));
  return *this;
}

Sdt& Sdt::zeros(size_t n) {
  data_.resize(data_.size() + n, 0);
  return *this;
}

Sdt& Sdt::gas(GasSpace space, uint8_t bit_width, uint8_t access_size, uint64_t address) {
  zeros(12);
  put_gas(size() - 12, space, bit_width, access_size, address);
  return *this;
}

void Sdt::put_u8(size_t offset, uint8_t v) { put(offset, v, 1); }
void Sdt::put_u16(size_t offset, uint16_t v) { put(offset, v, 2); }
void Sdt::put_u32(size_t offset, uint32_t v) { put(offset, v, 4); }
void Sdt::put_u64(size_t offset, uint64_t v) { put(offset, v, 8); }

void Sdt::put_gas(size_t offset, GasSpace space, uint8_t bit_width, uint8_t access_size,
                  uint64_t address) {
  put_u8(offset, uint8_t(space));
  put_u8(offset + 1, bit_width);
  put_u8(offset + 2, 0);  // bit offset
  put_u8(offset + 3, access_size);
  put_u64(offset + 4, address);
}

std::vector<uint8_t> Sdt::finish() && {
  put_u32(4, uint32_t(data_.size()));
  put_u8(9, 0);
  put_u8(9, checksum_byte(data_));
  return std::move(data_);
}

}  // namespace pinless::vmm::acpi
