#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <string>

#include "pinless/virtio/iommu/wire.h"

using namespace pinless::virtio::viommu;

TEST_CASE("viommu wire: identity, features, types and status codes are the spec's numbers") {
  CHECK(kDeviceId == 23);
  CHECK(kPciDeviceId == 0x1057);
  CHECK(kFInputRange == 0x1);
  CHECK(kFDomainRange == 0x2);
  CHECK(kFMapUnmap == 0x4);
  CHECK(kFBypass == 0x8);
  CHECK(kFProbe == 0x10);
  CHECK(kFMmio == 0x20);
  CHECK(kFBypassConfig == 0x40);
  CHECK(kFVersion1 == 0x100000000ull);
  CHECK(uint8_t(RequestType::kAttach) == 1);
  CHECK(uint8_t(RequestType::kDetach) == 2);
  CHECK(uint8_t(RequestType::kMap) == 3);
  CHECK(uint8_t(RequestType::kUnmap) == 4);
  CHECK(uint8_t(RequestType::kProbe) == 5);
  const std::array<StatusCode, 9> all{StatusCode::kOk,    StatusCode::kIoErr, StatusCode::kUnsupp,
                                      StatusCode::kDevErr, StatusCode::kInval, StatusCode::kRange,
                                      StatusCode::kNoent, StatusCode::kFault, StatusCode::kNomem};
  const std::array<const char*, 9> names{"OK",    "IOERR", "UNSUPP", "DEVERR", "INVAL",
                                         "RANGE", "NOENT", "FAULT",  "NOMEM"};
  for (size_t i = 0; i < all.size(); ++i) {
    CHECK(uint8_t(all[i]) == i);
    CHECK(std::string(name(all[i])) == names[i]);
  }
  CHECK(attach::kFlagBypass == 1);
  CHECK(map::kFlagRead == 1);
  CHECK(map::kFlagWrite == 2);
  CHECK(map::kFlagMmio == 4);  // not the stale v0.9 value 8
}

TEST_CASE("viommu wire: request and config layouts") {
  CHECK(attach::kSize == 24);
  CHECK(attach::kReadable + kTailSize == attach::kSize);
  CHECK(detach::kReadable + kTailSize == detach::kSize);
  CHECK(map::kReadable + kTailSize == map::kSize);
  CHECK(map::kSize == 40);
  CHECK(unmap::kReadable + kTailSize == unmap::kSize);
  CHECK(unmap::kSize == 32);
  CHECK(probe::kReadable == 72);
  CHECK(readable_size(0) == 0);
  CHECK(readable_size(1) == 20);
  CHECK(readable_size(2) == 20);
  CHECK(readable_size(3) == 36);
  CHECK(readable_size(4) == 28);
  CHECK(readable_size(5) == 72);
  CHECK(readable_size(6) == 0);
  CHECK(readable_size(255) == 0);
  CHECK(config::kSize == 40);
  CHECK(config::kBypass == 36);
  CHECK(probe::kResvMemSize == 24);
  CHECK(probe::kResvMemLength == 20);
}

TEST_CASE("viommu wire: little-endian loads and stores stay inside the span") {
  std::array<uint8_t, 10> b{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a};
  CHECK(le16(b, 0) == 0x0201);
  CHECK(le32(b, 1) == 0x05040302u);
  CHECK(le64(b, 2) == 0x0a09080706050403ull);
  // Fields that do not lie wholly inside read as 0, whatever the offset.
  CHECK(le64(b, 3) == 0);
  CHECK(le32(b, 7) == 0);
  CHECK(le16(b, 9) == 0);
  CHECK(le16(b, 10) == 0);
  CHECK(le32(b, ~size_t{0}) == 0);
  CHECK(le16(std::span<const uint8_t>{}, 0) == 0);

  std::array<uint8_t, 10> out{};
  put_le64(out, 1, 0x1122334455667788ull);
  CHECK(out == std::array<uint8_t, 10>{0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0});
  put_le32(out, 7, 0xdeadbeef);  // would run past the end: not written at all
  put_le16(out, ~size_t{0}, 0xffff);
  CHECK(out == std::array<uint8_t, 10>{0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0});
  put_le16(out, 8, 0xabcd);
  CHECK(out[8] == 0xcd);
  CHECK(out[9] == 0xab);
}
