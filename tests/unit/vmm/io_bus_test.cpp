#include <doctest/doctest.h>

#include <vector>

#include "pinless/vmm/io_bus.h"

using namespace pinless;
using namespace pinless::vmm;

namespace {
struct Recorder : pci::IoDevice {
  struct Access {
    bool write;
    uint64_t offset;
    std::vector<uint8_t> data;
  };
  std::vector<Access> log;
  uint8_t fill = 0x42;
  void read(uint64_t offset, std::span<uint8_t> data) override {
    for (auto& b : data) b = fill;
    log.push_back({false, offset, {data.begin(), data.end()}});
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    log.push_back({true, offset, {data.begin(), data.end()}});
  }
};
}  // namespace

TEST_CASE("io bus dispatches PIO with the offset into the claimed range") {
  IoBus bus;
  Recorder dev;
  REQUIRE(bus.register_pio(0x3f8, 8, &dev, "serial"));
  uint8_t v = 0x55;
  CHECK(bus.pio_write(0x3fb, std::span(&v, 1)));
  REQUIRE(dev.log.size() == 1);
  CHECK(dev.log[0].write);
  CHECK(dev.log[0].offset == 3);
  CHECK(dev.log[0].data == std::vector<uint8_t>{0x55});
  uint8_t r[2] = {};
  CHECK(bus.pio_read(0x3f8, r));
  CHECK(r[0] == 0x42);
  CHECK(bus.owner(IoBus::Space::kPio, 0x3ff) == "serial");
  CHECK(bus.owner(IoBus::Space::kPio, 0x400) == "");
}

TEST_CASE("io bus rejects overlapping, empty and wrapping ranges") {
  IoBus bus;
  Recorder a, b;
  REQUIRE(bus.register_mmio(Gpa(0x1000), 0x1000, &a, "a"));
  CHECK_FALSE(bus.register_mmio(Gpa(0x1fff), 0x10, &b, "b"));   // tail overlap
  CHECK_FALSE(bus.register_mmio(Gpa(0x0800), 0x0801, &b, "b"));  // head overlap
  CHECK_FALSE(bus.register_mmio(Gpa(0x0), 0x10000, &b, "b"));    // covers a
  CHECK_FALSE(bus.register_mmio(Gpa(0x5000), 0, &b, "b"));
  CHECK_FALSE(bus.register_mmio(Gpa(~0ull - 4), 0x10, &b, "b"));
  CHECK_FALSE(bus.register_pio(0xfff0, 0x20, &b, "b"));
  auto err = bus.register_mmio(Gpa(0x1800), 0x10, &b, "b");
  REQUIRE_FALSE(err);
  CHECK(err.error().message().find("overlaps a") != std::string::npos);
  CHECK(bus.register_mmio(Gpa(0x2000), 0x1000, &b, "b"));  // adjacent is fine
  CHECK(bus.register_mmio(Gpa(0x0), 0x1000, &b, "c"));
}

TEST_CASE("unclaimed accesses read all-ones and are ignored on write") {
  IoBus bus;
  Recorder dev;
  REQUIRE(bus.register_mmio(Gpa(0x1000), 0x10, &dev, "dev"));
  uint8_t buf[4] = {1, 2, 3, 4};
  CHECK_FALSE(bus.mmio_read(Gpa(0x5000), buf));
  CHECK(buf[0] == 0xff);
  CHECK(buf[3] == 0xff);
  CHECK_FALSE(bus.mmio_write(Gpa(0x0), buf));
  // An access that starts inside but runs past the end is not the device's.
  CHECK_FALSE(bus.mmio_read(Gpa(0x100e), buf));
  CHECK(dev.log.empty());
  CHECK(bus.unclaimed_accesses() == 3);
}

TEST_CASE("unregistering frees the range") {
  IoBus bus;
  Recorder dev;
  REQUIRE(bus.register_mmio(Gpa(0xc0000000), 0x1000, &dev, "bar0"));
  CHECK(bus.unregister_mmio(Gpa(0xc0000000), &dev));
  CHECK_FALSE(bus.unregister_mmio(Gpa(0xc0000000), &dev));
  uint8_t v = 0;
  CHECK_FALSE(bus.mmio_read(Gpa(0xc0000000), std::span(&v, 1)));
  CHECK(bus.register_mmio(Gpa(0xc0000800), 0x1000, &dev, "bar0-moved"));
}

TEST_CASE("unregistering only removes a range the same device registered") {
  IoBus bus;
  Recorder serial, intruder;
  REQUIRE(bus.register_pio(0x3f8, 8, &serial, "serial"));
  REQUIRE(bus.register_mmio(Gpa(0xb0000000), 0x1000, &serial, "ecam"));
  // Another device (e.g. a BAR the guest moved over the serial port) was refused there, so
  // its unregister at that address must leave the owner's range alone.
  CHECK_FALSE(bus.unregister_pio(0x3f8, &intruder));
  CHECK_FALSE(bus.unregister_mmio(Gpa(0xb0000000), &intruder));
  CHECK(bus.owner(IoBus::Space::kPio, 0x3f8) == "serial");
  CHECK(bus.owner(IoBus::Space::kMmio, 0xb0000000) == "ecam");
  uint8_t v = 0;
  CHECK(bus.pio_read(0x3f8, std::span(&v, 1)));
  CHECK(serial.log.size() == 1);
  CHECK(intruder.log.empty());
  CHECK(bus.unregister_pio(0x3f8, &serial));
  CHECK(bus.unregister_mmio(Gpa(0xb0000000), &serial));
  CHECK(bus.owner(IoBus::Space::kPio, 0x3f8).empty());
}
