#include <doctest/doctest.h>
#include <sys/mman.h>

#include "fakes/fake_sys.h"
#include "pinless/vmm/layout.h"
#include "pinless/vmm/memory/guest_memory.h"

using namespace pinless;
using namespace pinless::vmm;
using pinless::testing::FakeSys;

TEST_CASE("layout: small guests have only low RAM") {
  auto l = layout::compute_layout(512 * kMiB);
  CHECK(l.low_ram.start == Gpa(0));
  CHECK(l.low_ram.size == 512 * kMiB);
  CHECK(l.high_ram.size == 0);
  CHECK(l.pci_mmio64.start == Gpa(4 * kGiB));
  CHECK(l.pci_mmio64.size == 16 * kGiB);
  CHECK(l.ecam.start == Gpa(0xe0000000));
  CHECK(l.ecam.size == 256 * kMiB);
}

TEST_CASE("layout: RAM above 3 GiB moves above 4 GiB; 64-bit window on a 1 GiB boundary") {
  auto l = layout::compute_layout(4 * kGiB + 512 * kMiB);
  CHECK(l.low_ram.size == 3 * kGiB);
  CHECK(l.high_ram.start == Gpa(4 * kGiB));
  CHECK(l.high_ram.size == 1536 * kMiB);
  CHECK(l.ram_end() == Gpa(5 * kGiB + 512 * kMiB));
  CHECK(l.pci_mmio64.start == Gpa(6 * kGiB));
  CHECK_FALSE(l.low_ram.overlaps(l.pci_mmio32));
  CHECK_FALSE(l.pci_mmio32.overlaps(l.ecam));
  CHECK(l.ecam.end() <= layout::kIoapic);
}

TEST_CASE("guest memory: one memfd, split around the hole, bounds-checked translation") {
  FakeSys sys;
  // 3 GiB + 4 MiB of address space is only reserved (anonymous, untouched), not used.
  auto mem = GuestMemory::create(sys, {3 * kGiB + 4 * kMiB, false, false});
  REQUIRE(mem.has_value());
  CHECK(sys.count_what("memfd_create") == 1);
  CHECK(sys.count_what("ftruncate") == 1);
  REQUIRE(mem->regions().size() == 2);
  const auto& lo = mem->regions()[0];
  const auto& hi = mem->regions()[1];
  CHECK(lo.gpa.size == 3 * kGiB);
  CHECK(hi.gpa.start == Gpa(4 * kGiB));
  CHECK(hi.gpa.size == 4 * kMiB);
  CHECK(hi.host == lo.host + 3 * kGiB);
  CHECK(hi.memfd_offset == 3 * kGiB);

  CHECK(mem->host_ptr(Gpa(0x1000), 8).value() == lo.host + 0x1000);
  CHECK(mem->host_ptr(Gpa(4 * kGiB + 0x10), 8).value() == hi.host + 0x10);
  CHECK_FALSE(mem->host_ptr(Gpa(3 * kGiB), 1));                 // in the hole
  CHECK_FALSE(mem->host_ptr(Gpa(3 * kGiB - 4), 8));             // straddles the end of low RAM
  CHECK_FALSE(mem->host_ptr(Gpa(4 * kGiB + 4 * kMiB), 1));      // past the end
  CHECK_FALSE(mem->host_ptr(Gpa(~0ull - 2), 8));                // wraps

  REQUIRE(mem->write_obj(Gpa(4 * kGiB + 8), uint64_t{0x1122334455667788}));
  CHECK(mem->read_obj<uint64_t>(Gpa(4 * kGiB + 8)).value() == 0x1122334455667788);
  auto err = mem->write_obj(Gpa(0xc0000000), uint32_t{1});
  REQUIRE_FALSE(err);
  CHECK(err.error().message().find("0xc0000000") != std::string::npos);
}

TEST_CASE("guest memory unmaps on destruction and after a move") {
  FakeSys sys;
  {
    auto mem = GuestMemory::create(sys, {64 * kMiB, false, false});
    REQUIRE(mem.has_value());
    GuestMemory moved(std::move(*mem));
    CHECK(sys.live_mappings() == 1);
  }
  CHECK(sys.live_mappings() == 0);
}

TEST_CASE("guest memory rejects sizes that are not 2 MiB multiples") {
  FakeSys sys;
  auto r = GuestMemory::create(sys, {64 * kMiB + 4096, false, false});
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("2M") != std::string::npos);
}

TEST_CASE("hugepages: a shortage at mmap names the sysctl and the page count") {
  FakeSys sys;
  sys.fail_next_mmap(ENOMEM);
  auto r = GuestMemory::create(sys, {256 * kMiB, true, false});
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("echo 128 > /proc/sys/vm/nr_hugepages") != std::string::npos);
}

TEST_CASE("guest memory: the memfd closes and the mapping unmaps through the Sys") {
  FakeSys sys;
  int memfd = -1;
  {
    auto mem = GuestMemory::create(sys, {64 * kMiB, false, false});
    REQUIRE(mem.has_value());
    memfd = mem->memfd();
    CHECK(sys.live_mappings() == 1);
  }
  CHECK(sys.live_mappings() == 0);
  size_t closes = 0;
  for (const auto& c : sys.calls()) closes += c.what == "close" && c.fd == memfd;
  CHECK(closes == 1);
}
