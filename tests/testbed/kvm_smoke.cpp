// kvm_smoke: the smallest real KVM round trip. Creates a VM with one 64 KiB
// memslot and one vCPU in real mode running
//     mov ax, 0x1234 ; add ax, 0x0101 ; mov dx, 0x10 ; out dx, al ; hlt
// and checks the PIO exit (port 0x10, 1 byte, value 0x35), the HLT exit and
// RAX = 0x1335. Prints the time each step took.
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "pinless/base/linux_kvm.h"
#include "testbed_util.h"

using namespace pinless::testbed;

namespace {

constexpr uint64_t kMemSize = 0x10000;
constexpr uint64_t kCodeGpa = 0x1000;
constexpr uint16_t kPort = 0x10;

const uint8_t kCode[] = {
    0xb8, 0x34, 0x12,  // mov ax, 0x1234
    0x05, 0x01, 0x01,  // add ax, 0x0101
    0xba, 0x10, 0x00,  // mov dx, 0x0010
    0xee,              // out dx, al
    0xf4,              // hlt
};

const char* exit_name(uint32_t r) {
  switch (r) {
    case KVM_EXIT_IO: return "IO";
    case KVM_EXIT_HLT: return "HLT";
    case KVM_EXIT_MMIO: return "MMIO";
    case KVM_EXIT_SHUTDOWN: return "SHUTDOWN";
    case KVM_EXIT_FAIL_ENTRY: return "FAIL_ENTRY";
    case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
    default: return "other";
  }
}

}  // namespace

int main() {
  g_prog = "kvm_smoke";
  uint64_t t0 = now_us();
  Fd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!kvm.valid())
    fail("open /dev/kvm: %s (no KVM here: run inside scripts/testbed, or load kvm_amd/kvm_intel)", err());
  int api = ioctl(kvm.get(), KVM_GET_API_VERSION, 0);
  if (api != KVM_API_VERSION) fail("KVM_GET_API_VERSION = %d, want %d", api, KVM_API_VERSION);

  Fd vm(ioctl(kvm.get(), KVM_CREATE_VM, 0));
  if (!vm.valid()) fail("KVM_CREATE_VM: %s", err());
  // Needed on Intel (real mode via vm86 TSS); accepted and ignored on AMD.
  if (ioctl(kvm.get(), KVM_CHECK_EXTENSION, KVM_CAP_SET_TSS_ADDR) > 0 &&
      ioctl(vm.get(), KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0)
    fail("KVM_SET_TSS_ADDR: %s", err());

  void* mem = mmap(nullptr, kMemSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) fail("mmap guest memory: %s", err());
  std::memcpy(static_cast<uint8_t*>(mem) + kCodeGpa, kCode, sizeof kCode);
  kvm_userspace_memory_region region{};
  region.slot = 0;
  region.guest_phys_addr = 0;
  region.memory_size = kMemSize;
  region.userspace_addr = reinterpret_cast<uint64_t>(mem);
  if (ioctl(vm.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0)
    fail("KVM_SET_USER_MEMORY_REGION: %s", err());

  Fd vcpu(ioctl(vm.get(), KVM_CREATE_VCPU, 0));
  if (!vcpu.valid()) fail("KVM_CREATE_VCPU: %s", err());
  int run_size = ioctl(kvm.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (run_size <= 0) fail("KVM_GET_VCPU_MMAP_SIZE: %s", err());
  auto* run = static_cast<kvm_run*>(
      mmap(nullptr, size_t(run_size), PROT_READ | PROT_WRITE, MAP_SHARED, vcpu.get(), 0));
  if (run == MAP_FAILED) fail("mmap kvm_run: %s", err());
  uint64_t t_created = now_us();

  kvm_sregs sregs{};
  if (ioctl(vcpu.get(), KVM_GET_SREGS, &sregs) < 0) fail("KVM_GET_SREGS: %s", err());
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  if (ioctl(vcpu.get(), KVM_SET_SREGS, &sregs) < 0) fail("KVM_SET_SREGS: %s", err());
  kvm_regs regs{};
  regs.rip = kCodeGpa;
  regs.rflags = 0x2;
  if (ioctl(vcpu.get(), KVM_SET_REGS, &regs) < 0) fail("KVM_SET_REGS: %s", err());

  uint64_t t_run = now_us();
  if (ioctl(vcpu.get(), KVM_RUN, 0) < 0) fail("KVM_RUN: %s", err());
  uint64_t t_io = now_us();
  if (run->exit_reason != KVM_EXIT_IO)
    fail("first exit %s (%u), want IO", exit_name(run->exit_reason), run->exit_reason);
  if (run->io.direction != KVM_EXIT_IO_OUT || run->io.port != kPort || run->io.size != 1 ||
      run->io.count != 1)
    fail("IO exit: dir %u port 0x%x size %u count %u, want out 0x%x size 1 count 1",
         run->io.direction, run->io.port, run->io.size, run->io.count, kPort);
  uint8_t value = *(reinterpret_cast<uint8_t*>(run) + run->io.data_offset);
  if (value != 0x35) fail("OUT value 0x%02x, want 0x35 (0x1234 + 0x0101, low byte)", value);

  if (ioctl(vcpu.get(), KVM_RUN, 0) < 0) fail("second KVM_RUN: %s", err());
  uint64_t t_hlt = now_us();
  if (run->exit_reason != KVM_EXIT_HLT)
    fail("second exit %s (%u), want HLT", exit_name(run->exit_reason), run->exit_reason);
  if (ioctl(vcpu.get(), KVM_GET_REGS, &regs) < 0) fail("KVM_GET_REGS: %s", err());
  if ((regs.rax & 0xffff) != 0x1335) fail("AX = 0x%llx, want 0x1335", regs.rax & 0xffff);
  if (regs.rip != kCodeGpa + sizeof kCode)
    fail("RIP = 0x%llx after HLT, want 0x%llx", regs.rip,
         static_cast<unsigned long long>(kCodeGpa + sizeof kCode));

  info("ok: real-mode vCPU: OUT 0x%x <- 0x%02x, HLT, AX=0x%04llx; create VM+vCPU %llu us, "
       "run to IO exit %llu us, IO to HLT %llu us, total %llu us",
       kPort, value, regs.rax & 0xffff, static_cast<unsigned long long>(t_created - t0),
       static_cast<unsigned long long>(t_io - t_run), static_cast<unsigned long long>(t_hlt - t_io),
       static_cast<unsigned long long>(now_us() - t0));
  munmap(run, size_t(run_size));
  munmap(mem, kMemSize);
  return 0;
}
