#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "pinless/vmm/kvm/vcpu_control.h"

using namespace pinless::vmm;
using namespace std::chrono_literals;

TEST_CASE("pause gate: vCPU threads park while paused and go on after resume") {
  PauseGate gate;
  VmState state;
  std::atomic<bool> quit{false};
  std::atomic<uint64_t> laps{0};
  std::vector<std::thread> vcpus;
  for (int i = 0; i < 3; ++i) {
    vcpus.emplace_back([&] {
      while (!quit) {
        gate.wait_while_paused(state);
        laps++;
        std::this_thread::yield();
      }
    });
  }
  gate.pause();
  REQUIRE(gate.wait_parked(3, 5s));
  CHECK(gate.paused());
  uint64_t parked_at = laps.load();
  std::this_thread::sleep_for(20ms);
  CHECK(laps.load() == parked_at);  // nobody ran while parked
  CHECK(gate.parked() == 3);
  gate.resume();
  while (laps.load() < parked_at + 100) std::this_thread::yield();
  CHECK_FALSE(gate.paused());
  quit = true;
  for (auto& t : vcpus) t.join();
  CHECK(gate.parked() == 0);
}

TEST_CASE("pause gate: a stopping VM releases parked threads, and nothing parks after") {
  PauseGate gate;
  VmState state;
  gate.pause();
  std::thread vcpu([&] { CHECK(gate.wait_while_paused(state)); });
  REQUIRE(gate.wait_parked(1, 5s));
  state.stopped("test");
  gate.wake_all();
  vcpu.join();
  CHECK_FALSE(gate.wait_while_paused(state));  // stopping: returns at once
  CHECK_FALSE(gate.wait_parked(1, 10ms));
}

TEST_CASE("exit counters: by reason, the rest counted as other") {
  ExitCounters c;
  c.count(2);
  c.count(2);
  c.count(5);
  c.count(1000);
  CHECK(c.by_reason[2] == 2);
  CHECK(c.by_reason[5] == 1);
  CHECK(c.other == 1);
}

TEST_CASE("vm state: a stop through the API exits 0 in both modes and keeps its cause") {
  VmState s;
  s.stopped("stopped through the API (vm.stop)");
  CHECK(s.stopping());
  CHECK(s.outcome() == VmState::Outcome::kStopped);
  CHECK(s.exit_status(ExitStatusMode::kGuest) == 0);
  CHECK(s.exit_status(ExitStatusMode::kVmm) == 0);
  s.power_off();  // the first outcome wins
  CHECK(s.cause() == "stopped through the API (vm.stop)");
}
