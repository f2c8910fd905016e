#include <doctest/doctest.h>

#include "pinless/base/size.h"
#include "pinless/base/types.h"

using namespace pinless;

TEST_CASE("parse_size accepts the forms users write") {
  CHECK(parse_size("4096").value() == 4096);
  CHECK(parse_size("512M").value() == 512 * kMiB);
  CHECK(parse_size("4G").value() == 4 * kGiB);
  CHECK(parse_size("1GiB").value() == kGiB);
  CHECK(parse_size("2k").value() == 2048);
  CHECK(parse_size("0x1000").value() == 4096);
}

TEST_CASE("parse_size rejects junk with a hint") {
  for (const char* bad : {"", "M", "12Q", "-1", "1.5G", "99999999999999999999", "16777216T"}) {
    auto r = parse_size(bad);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message().find("512M") != std::string::npos);
  }
}

TEST_CASE("format_size picks the largest exact unit") {
  CHECK(format_size(kGiB) == "1G");
  CHECK(format_size(1536 * kMiB) == "1536M");
  CHECK(format_size(4097) == "4097");
}

TEST_CASE("strong address ranges") {
  Range<Gpa> r{Gpa(0x1000), 0x2000};
  CHECK(r.contains(Gpa(0x1000)));
  CHECK(r.contains(Gpa(0x2fff)));
  CHECK_FALSE(r.contains(Gpa(0x3000)));
  CHECK(r.contains(Gpa(0x2000), 0x1000));
  CHECK_FALSE(r.contains(Gpa(0x2000), 0x1001));
  CHECK(r.overlaps(Range<Gpa>{Gpa(0x2fff), 1}));
  CHECK_FALSE(r.overlaps(Range<Gpa>{Gpa(0x3000), 1}));
  CHECK(Gpa(0x1234).align_down(0x1000) == Gpa(0x1000));
}

TEST_CASE("format_hex prints addresses the way messages use them") {
  CHECK(format_hex(0x1f000) == "0x1f000");
  CHECK(format_hex(0) == "0");
  CHECK(format_hex(UINT64_MAX) == "0xffffffffffffffff");
}
