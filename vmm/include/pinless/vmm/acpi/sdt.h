// System Description Table writer: the 36-byte ACPI table header (signature, length,
// revision, checksum, OEM fields) plus little-endian field writers and Generic Address
// Structures. finish() patches the length and makes the table's bytes sum to zero.
// Value type; thread-compatible.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace pinless::vmm::acpi {

constexpr size_t kSdtHeaderSize = 36;
constexpr std::string_view kOemId = "PNLESS";      // 6 bytes
constexpr std::string_view kOemTableId = "PINLESS ";  // 8 bytes
constexpr std::string_view kCreatorId = "PNLS";     // 4 bytes
constexpr uint32_t kOemRevision = 1;
constexpr uint32_t kCreatorRevision = 1;

// The byte that makes `bytes` (with the checksum byte itself zero) sum to 0 mod 256.
uint8_t checksum_byte(std::span<const uint8_t> bytes);
// Sum of all bytes mod 256 (0 for a valid table).
uint8_t byte_sum(std::span<const uint8_t> bytes);

// Generic Address Structure address space ids.
enum class GasSpace : uint8_t { kSystemMemory = 0, kSystemIo = 1 };

class Sdt {
 public:
  // `signature` is 4 characters ("FACP", "APIC", ...).
  Sdt(std::string_view signature, uint8_t revision);

  // Appenders.
  Sdt& u8(uint8_t v);
  Sdt& u16(uint16_t v);
  Sdt& u32(uint32_t v);
  Sdt& u64(uint64_t v);
  Sdt& bytes(std::span<const uint8_t> v);
  Sdt& text(std::string_view s, size_t width);  // truncated or space-padded to `width`
  Sdt& zeros(size_t n);
  // Generic Address Structure (12 bytes); access_size 1 = byte, 2 = word, 3 = dword, 4 = qword.
  Sdt& gas(GasSpace space, uint8_t bit_width, uint8_t access_size, uint64_t address);

  // Overwrite already appended bytes (for fields at fixed offsets).
  void put_u8(size_t offset, uint8_t v);
  void put_u16(size_t offset, uint16_t v);
  void put_u32(size_t offset, uint32_t v);
  void put_u64(size_t offset, uint64_t v);
  void put_gas(size_t offset, GasSpace space, uint8_t bit_width, uint8_t access_size,
               uint64_t address);

  size_t size() const { return data_.size(); }
  // Sets the length and checksum fields and returns the table.
  std::vector<uint8_t> finish() &&;

 private:
  void put(size_t offset, uint64_t v, int n);
  std::vector<uint8_t> data_;
};

}  // namespace pinless::vmm::acpi
