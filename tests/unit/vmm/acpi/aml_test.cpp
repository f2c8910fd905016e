// Exact encodings of small AML constructs, checked against the ACPI 6.x grammar and what
// iasl emits for the equivalent ASL.
#include <doctest/doctest.h>

#include "pinless/vmm/acpi/aml.h"

using namespace pinless::vmm::acpi;
using aml::Bytes;

TEST_CASE("aml: PkgLength uses 1 to 3 bytes and counts itself") {
  CHECK(aml::pkg_length(10) == Bytes{11});
  CHECK(aml::pkg_length(62) == Bytes{63});
  CHECK(aml::pkg_length(63) == Bytes{0x41, 0x04});  // 65 = 0x041
  CHECK(aml::pkg_length(4093) == Bytes{0x4f, 0xff});  // 4095
  CHECK(aml::pkg_length(4094) == Bytes{0x81, 0x00, 0x01});  // 4097 = 0x01001
}

TEST_CASE("aml: name strings pad segments and use dual/multi prefixes") {
  CHECK(aml::name_string("_SB") == Bytes{'_', 'S', 'B', '_'});
  CHECK(aml::name_string("\\_SB.PCI0") ==
        Bytes{'\\', 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'});
  CHECK(aml::name_string("\\") == Bytes{'\\', 0x00});
  CHECK(aml::name_string("^FOO") == Bytes{'^', 'F', 'O', 'O', '_'});
  CHECK(aml::name_string("A.B.C") == Bytes{0x2f, 3, 'A', '_', '_', '_', 'B', '_', '_', '_',
                                           'C', '_', '_', '_'});
}

TEST_CASE("aml: integers take the shortest encoding") {
  CHECK(aml::integer(0) == Bytes{0x00});
  CHECK(aml::integer(1) == Bytes{0x01});
  CHECK(aml::integer(~0ull) == Bytes{0xff});
  CHECK(aml::integer(0x0a) == Bytes{0x0a, 0x0a});
  CHECK(aml::integer(0x1234) == Bytes{0x0b, 0x34, 0x12});
  CHECK(aml::integer(0x12345678) == Bytes{0x0c, 0x78, 0x56, 0x34, 0x12});
  CHECK(aml::integer(1ull << 32) == Bytes{0x0e, 0, 0, 0, 0, 1, 0, 0, 0});
}

TEST_CASE("aml: strings and EISA ids") {
  CHECK(aml::string("AB") == Bytes{0x0d, 'A', 'B', 0x00});
  CHECK(aml::eisa_id("PNP0A03") == Bytes{0x0c, 0x41, 0xd0, 0x0a, 0x03});
  CHECK(aml::eisa_id("PNP0501") == Bytes{0x0c, 0x41, 0xd0, 0x05, 0x01});
}

TEST_CASE("aml: Name(_S5_, Package(){5, 0})") {
  Bytes s5 = aml::name("_S5", aml::package({aml::integer(5), aml::integer(0)}));
  CHECK(s5 == Bytes{0x08, '_', 'S', '5', '_', 0x12, 0x05, 0x02, 0x0a, 0x05, 0x00});
}

TEST_CASE("aml: Device with a Name and a Method") {
  Bytes dev = aml::device("COM1", {aml::name("_UID", aml::integer(1))});
  CHECK(dev == Bytes{0x5b, 0x82, 0x0b, 'C', 'O', 'M', '1', 0x08, '_', 'U', 'I', 'D', 0x01});
  Bytes sta = aml::method("_STA", 0, false, {aml::return_value(aml::integer(0x0f))});
  CHECK(sta == Bytes{0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f});
  Bytes ser = aml::method("FOO", 2, true, {});
  CHECK(ser == Bytes{0x14, 0x06, 'F', 'O', 'O', '_', 0x0a});
}

TEST_CASE("aml: Scope and Buffer") {
  CHECK(aml::scope("\\", {}) == Bytes{0x10, 0x03, '\\', 0x00});
  const uint8_t raw[] = {1, 2, 3};
  CHECK(aml::buffer(raw) == Bytes{0x11, 0x06, 0x0a, 0x03, 1, 2, 3});
}

TEST_CASE("aml: COM1 resources: IO(Decode16, 0x3f8, 0x3f8, 0, 8) and IRQNoFlags(){4}") {
  aml::ResourceTemplate crs;
  crs.io(0x3f8, 0x3f8, 0, 8).irq_no_flags(4);
  CHECK(crs.build() == Bytes{0x11, 0x10, 0x0a, 0x0d,
                             0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08,
                             0x22, 0x10, 0x00,
                             0x79, 0x00});
}

TEST_CASE("aml: address space descriptors") {
  aml::ResourceTemplate bus;
  bus.word_bus_number(0, 0xff);
  CHECK(bus.descriptors() == Bytes{0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00,
                                   0xff, 0x00, 0x00, 0x00, 0x00, 0x01});
  aml::ResourceTemplate io;
  io.word_io(0x1000, 0xffff);
  CHECK(io.descriptors() == Bytes{0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0x00, 0x00, 0x00, 0x10,
                                  0xff, 0xff, 0x00, 0x00, 0x00, 0xf0});
  aml::ResourceTemplate mem;
  mem.dword_memory(0xc0000000, 0xdfffffff, false);
  CHECK(mem.descriptors() == Bytes{0x87, 0x17, 0x00, 0x00, 0x0c, 0x01,
                                   0, 0, 0, 0,               // granularity
                                   0, 0, 0, 0xc0,            // min
                                   0xff, 0xff, 0xff, 0xdf,   // max
                                   0, 0, 0, 0,               // translation
                                   0, 0, 0, 0x20});          // length
  aml::ResourceTemplate mem64;
  mem64.qword_memory(0x100000000ull, 0x4ffffffffull, true);
  const Bytes& q = mem64.descriptors();
  REQUIRE(q.size() == 46);
  CHECK(q[0] == 0x8a);
  CHECK(q[1] == 0x2b);
  CHECK(q[5] == 0x07);  // read-write, prefetchable
  CHECK(q[14 + 4] == 0x01);  // min = 4 GiB
  CHECK(q[38 + 4] == 0x04);  // length = 16 GiB
  aml::ResourceTemplate fixed;
  fixed.memory32_fixed(0xe0000000, 0x10000000);
  CHECK(fixed.descriptors() == Bytes{0x86, 0x09, 0x00, 0x01, 0, 0, 0, 0xe0, 0, 0, 0, 0x10});
}

TEST_CASE("aml: Notify(\\_SB.PWRB, 0x80)") {
  CHECK(aml::notify("\\_SB.PWRB", aml::integer(0x80)) ==
        Bytes{0x86, '\\', 0x2e, '_', 'S', 'B', '_', 'P', 'W', 'R', 'B', 0x0a, 0x80});
  CHECK(aml::notify("BTN", aml::integer(2)) == Bytes{0x86, 'B', 'T', 'N', '_', 0x0a, 0x02});
}

TEST_CASE("aml: Method(_EVT, 1) { Notify(PWRB, 0x80) }") {
  Bytes evt = aml::method("_EVT", 1, false, {aml::notify("PWRB", aml::integer(0x80))});
  CHECK(evt == Bytes{0x14, 0x0d, '_', 'E', 'V', 'T', 0x01,
                     0x86, 'P', 'W', 'R', 'B', 0x0a, 0x80});
}

TEST_CASE("aml: Extended Interrupt descriptors (large item 0x89)") {
  // Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive){5}: flags bit 0 consumer, bit 1
  // edge; one DWord interrupt number; length 6 counts flags, table length and the DWord.
  aml::ResourceTemplate edge;
  edge.extended_interrupt(5, aml::Trigger::kEdge, aml::Polarity::kActiveHigh);
  CHECK(edge.build() == Bytes{0x11, 0x0e, 0x0a, 0x0b,
                              0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00,
                              0x79, 0x00});
  // Interrupt(ResourceConsumer, Level, ActiveLow, Exclusive){0x12345678}: bit 2 active low.
  aml::ResourceTemplate level;
  level.extended_interrupt(0x12345678, aml::Trigger::kLevel, aml::Polarity::kActiveLow);
  CHECK(level.descriptors() == Bytes{0x89, 0x06, 0x00, 0x05, 0x01, 0x78, 0x56, 0x34, 0x12});
}
