#include <doctest/doctest.h>
#include "pinless/base/linux_kvm.h"

#include <csignal>
#include <cstring>
#include <vector>

#include "pinless/vmm/kvm/exit.h"
#include "pinless/vmm/kvm/vm_state.h"

using namespace pinless;
using namespace pinless::vmm;
using Kind = ExitAction::Kind;

namespace {
struct Port : pci::IoDevice {
  std::vector<uint8_t> written;
  std::vector<uint64_t> offsets;
  void read(uint64_t offset, std::span<uint8_t> data) override {
    offsets.push_back(offset);
    for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(0x10 + i);
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    offsets.push_back(offset);
    written.insert(written.end(), data.begin(), data.end());
  }
};

// A kvm_run with room for PIO data after it, as KVM lays it out.
struct RunBuf {
  alignas(4096) uint8_t bytes[8192] = {};
  kvm_run& run() { return *reinterpret_cast<kvm_run*>(bytes); }
  size_t size() const { return sizeof(bytes); }
  uint8_t* data() { return bytes + 4096; }
};

void set_io(RunBuf& b, uint8_t dir, uint16_t port, uint8_t size, uint32_t count) {
  b.run().exit_reason = KVM_EXIT_IO;
  b.run().io.direction = dir;
  b.run().io.port = port;
  b.run().io.size = size;
  b.run().io.count = count;
  b.run().io.data_offset = 4096;
}
}  // namespace

TEST_CASE("PIO out goes to the device; string I/O repeats per element") {
  IoBus bus;
  Port dev;
  REQUIRE(bus.register_pio(0xf4, 2, &dev, "debug"));
  RunBuf b;
  set_io(b, KVM_EXIT_IO_OUT, 0xf4, 1, 3);
  b.data()[0] = 1;
  b.data()[1] = 2;
  b.data()[2] = 3;
  CHECK(handle_exit(b.run(), b.size(), bus).kind == Kind::kContinue);
  CHECK(dev.written == std::vector<uint8_t>{1, 2, 3});
  CHECK(dev.offsets == std::vector<uint64_t>{0, 0, 0});
}

TEST_CASE("PIO in fills kvm_run's data area; unclaimed ports read 0xff") {
  IoBus bus;
  Port dev;
  REQUIRE(bus.register_pio(0x60, 5, &dev, "i8042"));
  RunBuf b;
  set_io(b, KVM_EXIT_IO_IN, 0x63, 2, 1);
  CHECK(handle_exit(b.run(), b.size(), bus).kind == Kind::kContinue);
  CHECK(b.data()[0] == 0x10);
  CHECK(b.data()[1] == 0x11);
  CHECK(dev.offsets == std::vector<uint64_t>{3});
  set_io(b, KVM_EXIT_IO_IN, 0x80, 4, 1);
  CHECK(handle_exit(b.run(), b.size(), bus).kind == Kind::kContinue);
  CHECK(b.data()[3] == 0xff);
}

TEST_CASE("malformed PIO exits do not write outside kvm_run") {
  IoBus bus;
  RunBuf b;
  set_io(b, KVM_EXIT_IO_IN, 0x80, 4, 2000);  // 8000 bytes from offset 4096
  CHECK(handle_exit(b.run(), b.size(), bus).kind == Kind::kCrash);
  set_io(b, KVM_EXIT_IO_IN, 0x80, 3, 1);
  CHECK(handle_exit(b.run(), b.size(), bus).kind == Kind::kCrash);
}

TEST_CASE("MMIO read and write") {
  IoBus bus;
  Port dev;
  REQUIRE(bus.register_mmio(Gpa(0xe0000000), 0x1000, &dev, "ecam"));
  RunBuf b;
  b.run().exit_reason = KVM_EXIT_MMIO;
  b.run().mmio.phys_addr = 0xe0000010;
  b.run().mmio.len = 4;
  b.run().mmio.is_write = 1;
  std::memcpy(b.run().mmio.data, "\x01\x02\x03\x04", 4);
  CHECK(handle_exit(b.run(), b.size(), bus).kind == Kind::kContinue);
  CHECK(dev.written == std::vector<uint8_t>{1, 2, 3, 4});
  CHECK(dev.offsets == std::vector<uint64_t>{0x10});
  b.run().mmio.is_write = 0;
  b.run().mmio.len = 8;
  CHECK(handle_exit(b.run(), b.size(), bus).kind == Kind::kContinue);
  CHECK(b.run().mmio.data[7] == 0x17);
  b.run().mmio.len = 9;
  CHECK(handle_exit(b.run(), b.size(), bus).kind == Kind::kCrash);
}

TEST_CASE("terminal exits map to the guest ABI's outcomes") {
  IoBus bus;
  RunBuf b;
  b.run().exit_reason = KVM_EXIT_SHUTDOWN;
  CHECK(handle_exit(b.run(), b.size(), bus).kind == Kind::kReset);
  b.run().exit_reason = KVM_EXIT_FAIL_ENTRY;
  b.run().fail_entry.hardware_entry_failure_reason = 0x21;
  auto a = handle_exit(b.run(), b.size(), bus);
  CHECK(a.kind == Kind::kCrash);
  CHECK(a.reason.find("0x21") != std::string::npos);
  b.run().exit_reason = KVM_EXIT_INTERNAL_ERROR;
  b.run().internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
  a = handle_exit(b.run(), b.size(), bus);
  CHECK(a.kind == Kind::kCrash);
  CHECK(a.reason.find("emulation") != std::string::npos);
  b.run().exit_reason = KVM_EXIT_HLT;
  CHECK(handle_exit(b.run(), b.size(), bus).kind == Kind::kCrash);
  b.run().exit_reason = KVM_EXIT_SYSTEM_EVENT;
  b.run().system_event.type = KVM_SYSTEM_EVENT_SHUTDOWN;
  CHECK(handle_exit(b.run(), b.size(), bus).kind == Kind::kPowerOff);
  b.run().system_event.type = KVM_SYSTEM_EVENT_RESET;
  CHECK(handle_exit(b.run(), b.size(), bus).kind == Kind::kReset);
  b.run().system_event.type = KVM_SYSTEM_EVENT_CRASH;
  CHECK(handle_exit(b.run(), b.size(), bus).kind == Kind::kCrash);
  b.run().exit_reason = KVM_EXIT_INTR;
  CHECK(handle_exit(b.run(), b.size(), bus).kind == Kind::kContinue);
  b.run().exit_reason = 9999;
  a = handle_exit(b.run(), b.size(), bus);
  CHECK(a.kind == Kind::kCrash);
  CHECK(a.reason.find("9999") != std::string::npos);
}

TEST_CASE("VmState: first outcome wins and maps to the exit status") {
  VmState s;
  CHECK_FALSE(s.stopping());
  s.set_guest_status(7);
  s.power_off();
  s.reset("late");
  CHECK(s.stopping());
  CHECK(s.outcome() == VmState::Outcome::kPowerOff);
  CHECK(s.exit_status() == 7);

  VmState plain;
  plain.power_off();
  CHECK(plain.exit_status() == 0);
  VmState reset;
  reset.reset("i8042");
  CHECK(reset.exit_status() == 2);
  CHECK(reset.cause() == "i8042");
  VmState crash;
  crash.crash("x");
  CHECK(crash.exit_status() == 3);
  VmState sig;
  sig.interrupted(15);
  CHECK(sig.exit_status() == 143);
  VmState failed;
  failed.fail("KVM_RUN: Bad address");
  CHECK(failed.exit_status() == 1);
}

TEST_CASE("VmState names the signal that stopped the VM") {
  VmState s;
  s.interrupted(SIGINT);
  CHECK(s.cause() == "stopped by SIGINT");
  CHECK(s.exit_status() == 130);
}

TEST_CASE("exit status: guest mode passes the guest's status through, as it always did") {
  using O = VmState::Outcome;
  const auto guest = ExitStatusMode::kGuest;
  CHECK(exit_status_for(guest, O::kPowerOff, std::nullopt, 0) == 0);
  CHECK(exit_status_for(guest, O::kPowerOff, 0, 0) == 0);
  CHECK(exit_status_for(guest, O::kPowerOff, 7, 0) == 7);
  CHECK(exit_status_for(guest, O::kPowerOff, 2, 0) == 2);  // the overlap vmm mode removes
  CHECK(exit_status_for(guest, O::kPowerOff, 255, 0) == 255);
  CHECK(exit_status_for(guest, O::kFailed, 7, 0) == 1);
  CHECK(exit_status_for(guest, O::kReset, 7, 0) == 2);
  CHECK(exit_status_for(guest, O::kCrash, std::nullopt, 0) == 3);
  CHECK(exit_status_for(guest, O::kSignal, std::nullopt, SIGTERM) == 128 + SIGTERM);
}

TEST_CASE("exit status: in vmm mode no guest status can look like one of pinless's outcomes") {
  using O = VmState::Outcome;
  const auto vmm = ExitStatusMode::kVmm;
  CHECK(exit_status_for(vmm, O::kPowerOff, std::nullopt, 0) == 0);
  CHECK(exit_status_for(vmm, O::kPowerOff, 0, 0) == 0);
  CHECK(exit_status_for(vmm, O::kFailed, std::nullopt, 0) == 1);
  CHECK(exit_status_for(vmm, O::kRunning, std::nullopt, 0) == 1);
  CHECK(exit_status_for(vmm, O::kReset, 9, 0) == 2);
  CHECK(exit_status_for(vmm, O::kCrash, std::nullopt, 0) == 3);
  CHECK(exit_status_for(vmm, O::kSignal, std::nullopt, SIGINT) == 128 + SIGINT);
  // Every non-zero guest status, including 1, 2, 3 and 128+N, is one code of its own.
  for (int n = 1; n < 256; ++n) {
    CAPTURE(n);
    CHECK(exit_status_for(vmm, O::kPowerOff, uint8_t(n), 0) == kExitGuestStatus);
  }
  for (int code : {1, 2, 3}) CHECK(code != kExitGuestStatus);
  VmState s;
  s.set_guest_status(2);
  s.power_off();
  CHECK(s.exit_status() == 2);
  CHECK(s.exit_status(vmm) == kExitGuestStatus);
}
