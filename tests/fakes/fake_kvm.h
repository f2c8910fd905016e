// Scripts the KVM ioctls that Kvm::open and Vm::create issue on a FakeSys (API version 12,
// every capability present, fresh fds for the VM), so device tests can build a real Vm over
// the fake kernel and script only the ioctls they look at.
#pragma once

#include <initializer_list>

#include "fakes/fake_sys.h"
#include "pinless/base/linux_kvm.h"

namespace pinless::testing {

inline void script_kvm_vm(FakeSys& sys) {
  sys.on_open("/dev/kvm");
  sys.on_ioctl(KVM_GET_API_VERSION, [](int, unsigned long, void*) { return 12; });
  sys.on_ioctl(KVM_CHECK_EXTENSION, [](int, unsigned long, void*) { return 1; });
  sys.on_ioctl(KVM_GET_VCPU_MMAP_SIZE, [](int, unsigned long, void*) { return 3 * 4096; });
  sys.on_ioctl(KVM_CREATE_VM, [&sys](int, unsigned long, void*) { return sys.new_fd(); });
  for (unsigned long req : std::initializer_list<unsigned long>{KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR,
                                                                KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2}) {
    sys.on_ioctl(req, [](int, unsigned long, void*) { return 0; });
  }
}

}  // namespace pinless::testing
