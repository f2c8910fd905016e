// The timed KVM probe: runs `mov rcx, -1; l: dec rcx; jnz l` in a one-vCPU 64-bit guest for
// `budget_ms` (after a short warm-up), stops it with a kick, reads RCX to count iterations,
// and runs the same loop natively for comparison. Tells real hardware virtualisation
// (guest code at ~1x) from KVM implementations that emulate guest code (kvm_pvm: 1/7,400x).
// Creates and destroys its own VM; uses SIGUSR1 (the vCPU kick signal) on the calling thread.
// Call from one thread at a time.
#pragma once

#include "pinless/base/result.h"
#include "pinless/vmm/check/host_facts.h"
#include "pinless/vmm/kvm/kvm.h"

namespace pinless::vmm::check {

[[nodiscard]] Result<SpeedFacts> measure_kvm_speed(const Kvm& kvm, double budget_ms);

// Iterations per second of the loop on this CPU, measured for about `budget_ms`.
double host_loop_rate(double budget_ms);

}  // namespace pinless::vmm::check
