#include "pinless/vmm/kvm/exit.h"

#include <cstdio>

#include "pinless/base/log.h"
#include "pinless/base/size.h"

namespace pinless::vmm {
namespace {
using Kind = ExitAction::Kind;

ExitAction action(Kind kind, std::string reason) { return ExitAction{kind, std::move(reason)}; }

ExitAction handle_io(kvm_run& run, size_t run_size, IoBus& bus) {
  const auto& io = run.io;
  uint64_t bytes = uint64_t(io.size) * io.count;
  // KVM fills these, but a wrong offset would make us scribble over our own memory.
  if ((io.size != 1 && io.size != 2 && io.size != 4) || io.data_offset > run_size ||
      bytes > run_size - io.data_offset) {
    return action(Kind::kCrash, "malformed KVM_EXIT_IO (size " + std::to_string(io.size) +
                                    ", count " + std::to_string(io.count) + ")");
  }
  uint8_t* data = reinterpret_cast<uint8_t*>(&run) + io.data_offset;
  // String I/O (rep ins/outs) arrives as `count` accesses of `size` bytes each.
  for (uint32_t i = 0; i < io.count; ++i) {
    std::span<uint8_t> one(data + uint64_t(i) * io.size, io.size);
    if (io.direction == KVM_EXIT_IO_OUT) {
      bus.pio_write(io.port, one);
    } else {
      bus.pio_read(io.port, one);
    }
  }
  return ExitAction::cont();
}

ExitAction handle_mmio(kvm_run& run, IoBus& bus) {
  auto& mmio = run.mmio;
  if (mmio.len == 0 || mmio.len > sizeof(mmio.data)) {
    return action(Kind::kCrash, "malformed KVM_EXIT_MMIO (len " + std::to_string(mmio.len) + ")");
  }
  std::span<uint8_t> data(mmio.data, mmio.len);
  if (mmio.is_write) {
    bus.mmio_write(Gpa(mmio.phys_addr), data);
  } else {
    bus.mmio_read(Gpa(mmio.phys_addr), data);
  }
  return ExitAction::cont();
}

}  // namespace

std::string exit_reason_name(uint32_t reason) {
  switch (reason) {
    case KVM_EXIT_UNKNOWN: return "KVM_EXIT_UNKNOWN";
    case KVM_EXIT_EXCEPTION: return "KVM_EXIT_EXCEPTION";
    case KVM_EXIT_IO: return "KVM_EXIT_IO";
    case KVM_EXIT_HYPERCALL: return "KVM_EXIT_HYPERCALL";
    case KVM_EXIT_DEBUG: return "KVM_EXIT_DEBUG";
    case KVM_EXIT_HLT: return "KVM_EXIT_HLT";
    case KVM_EXIT_MMIO: return "KVM_EXIT_MMIO";
    case KVM_EXIT_IRQ_WINDOW_OPEN: return "KVM_EXIT_IRQ_WINDOW_OPEN";
    case KVM_EXIT_SHUTDOWN: return "KVM_EXIT_SHUTDOWN";
    case KVM_EXIT_FAIL_ENTRY: return "KVM_EXIT_FAIL_ENTRY";
    case KVM_EXIT_INTR: return "KVM_EXIT_INTR";
    case KVM_EXIT_INTERNAL_ERROR: return "KVM_EXIT_INTERNAL_ERROR";
    case KVM_EXIT_SYSTEM_EVENT: return "KVM_EXIT_SYSTEM_EVENT";
    default: return "exit reason " + std::to_string(reason);
  }
}

ExitAction handle_exit(kvm_run& run, size_t run_size, IoBus& bus) {
  switch (run.exit_reason) {
    case KVM_EXIT_IO:
      return handle_io(run, run_size, bus);
    case KVM_EXIT_MMIO:
      return handle_mmio(run, bus);
    case KVM_EXIT_INTR:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
    case KVM_EXIT_DEBUG:
      return ExitAction::cont();
    case KVM_EXIT_HLT:
      // With the in-kernel LAPIC, HLT never leaves the kernel. If it does, nothing can wake
      // the vCPU: report it rather than spin.
      return action(Kind::kCrash, "vCPU halted with no interrupt controller to wake it");
    case KVM_EXIT_SHUTDOWN:
      return action(Kind::kReset, "triple fault (KVM_EXIT_SHUTDOWN)");
    case KVM_EXIT_FAIL_ENTRY:
      return action(Kind::kCrash,
                    "KVM_EXIT_FAIL_ENTRY: hardware entry failure reason " +
                        format_hex(run.fail_entry.hardware_entry_failure_reason) + " on CPU " +
                        std::to_string(run.fail_entry.cpu));
    case KVM_EXIT_INTERNAL_ERROR: {
      const char* what = "unknown";
      switch (run.internal.suberror) {
        case KVM_INTERNAL_ERROR_EMULATION: what = "emulation failure"; break;
        case KVM_INTERNAL_ERROR_SIMUL_EX: what = "exception while delivering an exception"; break;
        case KVM_INTERNAL_ERROR_DELIVERY_EV: what = "event delivery failure"; break;
        case KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: what = "unexpected exit reason"; break;
      }
      return action(Kind::kCrash, "KVM_EXIT_INTERNAL_ERROR: " + std::string(what) +
                                      " (suberror " + std::to_string(run.internal.suberror) + ")");
    }
    case KVM_EXIT_SYSTEM_EVENT:
      switch (run.system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
          return action(Kind::kPowerOff, "KVM_SYSTEM_EVENT_SHUTDOWN");
        case KVM_SYSTEM_EVENT_RESET:
          return action(Kind::kReset, "reset (KVM_SYSTEM_EVENT_RESET)");
        case KVM_SYSTEM_EVENT_CRASH:
          return action(Kind::kCrash, "guest crash (KVM_SYSTEM_EVENT_CRASH)");
        default:
          return action(Kind::kCrash, "KVM_EXIT_SYSTEM_EVENT type " +
                                          std::to_string(run.system_event.type));
      }
    default:
      return action(Kind::kCrash, "unhandled " + exit_reason_name(run.exit_reason));
  }
}

}  // namespace pinless::vmm
