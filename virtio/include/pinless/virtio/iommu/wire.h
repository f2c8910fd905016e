// The virtio-iommu wire format (virtio 1.2 section 5.13): device identity, feature bits, the
// 40-byte device configuration, request layouts, status codes and PROBE properties. Every
// multi-byte field is little-endian. Guest bytes are never cast to structs: fields are read
// and written one at a time with the bounds-checked helpers below, at the offsets named here.
// Offsets count from the start of the whole request (head included), as the specification's
// structs do; the device-readable part of a request is its first `kReadable` bytes.
// Constants and pure functions only: thread-safe.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "pinless/virtio/features.h"

namespace pinless::virtio::viommu {

inline constexpr uint16_t kDeviceId = 23;          // virtio device ID
inline constexpr uint16_t kPciDeviceId = 0x1057;   // 0x1040 + 23
inline constexpr uint16_t kRequestQueue = 0;
inline constexpr uint16_t kEventQueue = 1;

// Feature bits (as masks). VERSION_1 is the generic virtio bit 32; Linux requires it and
// MAP_UNMAP. BYPASS (3) is superseded by BYPASS_CONFIG and new devices should not offer it.
inline constexpr uint64_t kFInputRange = 1ull << 0;
inline constexpr uint64_t kFDomainRange = 1ull << 1;
inline constexpr uint64_t kFMapUnmap = 1ull << 2;
inline constexpr uint64_t kFBypass = 1ull << 3;
inline constexpr uint64_t kFProbe = 1ull << 4;
inline constexpr uint64_t kFMmio = 1ull << 5;
inline constexpr uint64_t kFBypassConfig = 1ull << 6;
inline constexpr uint64_t kFVersion1 = kFeatureVersion1;  // the transport bit, under this header's names

// Device configuration (40 bytes). Only `bypass` is writable, and only with BYPASS_CONFIG.
namespace config {
inline constexpr uint64_t kPageSizeMask = 0;  // le64
inline constexpr uint64_t kInputStart = 8;    // le64
inline constexpr uint64_t kInputEnd = 16;     // le64, inclusive
inline constexpr uint64_t kDomainStart = 24;  // le32
inline constexpr uint64_t kDomainEnd = 28;    // le32, inclusive
inline constexpr uint64_t kProbeSize = 32;    // le32
inline constexpr uint64_t kBypass = 36;       // u8, then reserved[3]
inline constexpr uint64_t kSize = 40;
}  // namespace config

enum class RequestType : uint8_t { kAttach = 1, kDetach = 2, kMap = 3, kUnmap = 4, kProbe = 5 };

enum class StatusCode : uint8_t {
  kOk = 0,
  kIoErr = 1,
  kUnsupp = 2,
  kDevErr = 3,
  kInval = 4,
  kRange = 5,
  kNoent = 6,
  kFault = 7,
  kNomem = 8,
};
inline constexpr size_t kStatusCount = 9;

// head = {u8 type, u8 reserved[3]} (reserved ignored by the device);
// tail = {u8 status, u8 reserved[3]} (device-writable, reserved written as zero).
inline constexpr size_t kHeadSize = 4;
inline constexpr size_t kTailSize = 4;

namespace attach {
inline constexpr size_t kDomain = 4;     // le32
inline constexpr size_t kEndpoint = 8;   // le32
inline constexpr size_t kFlags = 12;     // le32
inline constexpr size_t kReserved = 16;  // u8[4], must be zero
inline constexpr size_t kReadable = 20;
inline constexpr size_t kSize = 24;
inline constexpr uint32_t kFlagBypass = 1u << 0;
}  // namespace attach

namespace detach {
inline constexpr size_t kDomain = 4;     // le32
inline constexpr size_t kEndpoint = 8;   // le32
inline constexpr size_t kReserved = 12;  // u8[8], ignored
inline constexpr size_t kReadable = 20;
inline constexpr size_t kSize = 24;
}  // namespace detach

namespace map {
inline constexpr size_t kDomain = 4;      // le32
inline constexpr size_t kVirtStart = 8;   // le64
inline constexpr size_t kVirtEnd = 16;    // le64, inclusive
inline constexpr size_t kPhysStart = 24;  // le64
inline constexpr size_t kFlags = 32;      // le32
inline constexpr size_t kReadable = 36;
inline constexpr size_t kSize = 40;
inline constexpr uint32_t kFlagRead = 1u << 0;
inline constexpr uint32_t kFlagWrite = 1u << 1;
inline constexpr uint32_t kFlagMmio = 1u << 2;  // only with kFMmio negotiated
inline constexpr uint32_t kKnownFlags = kFlagRead | kFlagWrite | kFlagMmio;
}  // namespace map

namespace unmap {
inline constexpr size_t kDomain = 4;     // le32
inline constexpr size_t kVirtStart = 8;  // le64
inline constexpr size_t kVirtEnd = 16;   // le64, inclusive
inline constexpr size_t kReserved = 24;  // u8[4], ignored
inline constexpr size_t kReadable = 28;
inline constexpr size_t kSize = 32;
}  // namespace unmap

// PROBE: the device-writable part is properties[probe_size] followed by the tail.
namespace probe {
inline constexpr size_t kEndpoint = 4;   // le32
inline constexpr size_t kReserved = 8;   // u8[64], ignored
inline constexpr size_t kReadable = 72;
// Property header: le16 {type:12, reserved:4}, le16 length (of the value, header excluded).
// The next property starts length + 4 bytes after this one; type 0 ends the list.
inline constexpr size_t kPropHeaderSize = 4;
inline constexpr uint16_t kPropTypeMask = 0x0fff;
inline constexpr uint16_t kPropNone = 0;
inline constexpr uint16_t kPropResvMem = 1;
// RESV_MEM value: u8 subtype, u8 reserved[3], le64 start@8, le64 end@16 (offsets from the
// property start, header included; end inclusive).
inline constexpr size_t kResvSubtype = 4;
inline constexpr size_t kResvStart = 8;
inline constexpr size_t kResvEnd = 16;
inline constexpr size_t kResvMemSize = 24;
inline constexpr uint16_t kResvMemLength = kResvMemSize - kPropHeaderSize;  // 20
inline constexpr uint8_t kResvReserved = 0;
inline constexpr uint8_t kResvMsi = 1;
}  // namespace probe

// Device-readable size of a request type, 0 for an unknown type.
constexpr size_t readable_size(uint8_t type) {
  switch (type) {
    case uint8_t(RequestType::kAttach): return attach::kReadable;
    case uint8_t(RequestType::kDetach): return detach::kReadable;
    case uint8_t(RequestType::kMap): return map::kReadable;
    case uint8_t(RequestType::kUnmap): return unmap::kReadable;
    case uint8_t(RequestType::kProbe): return probe::kReadable;
    default: return 0;
  }
}

constexpr const char* name(StatusCode s) {
  switch (s) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kIoErr: return "IOERR";
    case StatusCode::kUnsupp: return "UNSUPP";
    case StatusCode::kDevErr: return "DEVERR";
    case StatusCode::kInval: return "INVAL";
    case StatusCode::kRange: return "RANGE";
    case StatusCode::kNoent: return "NOENT";
    case StatusCode::kFault: return "FAULT";
    case StatusCode::kNomem: return "NOMEM";
  }
  return "?";
}

// Little-endian field access at `off`. A field that does not lie wholly inside `bytes` reads
// as 0 and is not written: callers check request sizes first, this is the second line.
template <std::unsigned_integral T>
constexpr T load_le(std::span<const uint8_t> bytes, size_t off) {
  if (off > bytes.size() || bytes.size() - off < sizeof(T)) return 0;
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v = T(v | T(T(bytes[off + i]) << (8 * i)));
  return v;
}
template <std::unsigned_integral T>
constexpr void store_le(std::span<uint8_t> bytes, size_t off, T v) {
  if (off > bytes.size() || bytes.size() - off < sizeof(T)) return;
  for (size_t i = 0; i < sizeof(T); ++i) bytes[off + i] = uint8_t(uint64_t(v) >> (8 * i));
}
constexpr uint16_t le16(std::span<const uint8_t> b, size_t off) {
  return load_le<uint16_t>(b, off);
}
constexpr uint32_t le32(std::span<const uint8_t> b, size_t off) {
  return load_le<uint32_t>(b, off);
}
constexpr uint64_t le64(std::span<const uint8_t> b, size_t off) {
  return load_le<uint64_t>(b, off);
}
constexpr void put_le16(std::span<uint8_t> b, size_t off, uint16_t v) { store_le(b, off, v); }
constexpr void put_le32(std::span<uint8_t> b, size_t off, uint32_t v) { store_le(b, off, v); }
constexpr void put_le64(std::span<uint8_t> b, size_t off, uint64_t v) { store_le(b, off, v); }

}  // namespace pinless::virtio::viommu
