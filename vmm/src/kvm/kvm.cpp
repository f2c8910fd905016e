#include "pinless/vmm/kvm/kvm.h"

#include <fcntl.h>

#include <cstring>
#include <memory>

#include "pinless/base/log.h"

namespace pinless::vmm {

std::vector<KvmCapability> required_kvm_capabilities() {
#define PINLESS_CAP(c) KvmCapability{c, #c}
  return {
      PINLESS_CAP(KVM_CAP_IRQCHIP),           PINLESS_CAP(KVM_CAP_HLT),
      PINLESS_CAP(KVM_CAP_USER_MEMORY),       PINLESS_CAP(KVM_CAP_SET_TSS_ADDR),
      PINLESS_CAP(KVM_CAP_SET_IDENTITY_MAP_ADDR), PINLESS_CAP(KVM_CAP_EXT_CPUID),
      PINLESS_CAP(KVM_CAP_PIT2),              PINLESS_CAP(KVM_CAP_IRQ_ROUTING),
      PINLESS_CAP(KVM_CAP_IRQFD),             PINLESS_CAP(KVM_CAP_IOEVENTFD),
      PINLESS_CAP(KVM_CAP_SIGNAL_MSI),        PINLESS_CAP(KVM_CAP_IMMEDIATE_EXIT),
      PINLESS_CAP(KVM_CAP_MP_STATE),
  };
#undef PINLESS_CAP
}

Result<Kvm> Kvm::open(Sys& sys, const char* path) {
  int fd = sys.open(path, O_RDWR, 0);
  if (fd == -ENOENT) return fail(kNoKvmMessage, 0);
  if (fd == -EACCES || fd == -EPERM) {
    return fail("open", -fd, path, "add this user to the group that owns " + std::string(path) +
                                       " (usually 'kvm') or run as root");
  }
  if (fd < 0) return fail("open", -fd, path);
  Kvm kvm(&sys, UniqueFd(sys, fd));

  int version = sys.ioctl_int(kvm.fd(), KVM_GET_API_VERSION, 0);
  if (version < 0) return fail("KVM_GET_API_VERSION", -version, path);
  if (version != kApiVersion) {
    return fail("KVM_GET_API_VERSION", 0,
                std::string(path) + ": API version " + std::to_string(version) + ", expected 12",
                "this kernel's KVM is not supported");
  }
  for (const auto& c : required_kvm_capabilities()) {
    int r = PINLESS_TRY(kvm.check_extension(c.cap));
    if (r <= 0) {
      return fail("KVM_CHECK_EXTENSION", 0,
                  std::string("host KVM lacks ") + c.name,
                  "pinless needs a kernel whose KVM supports " + std::string(c.name));
    }
  }
  int mmap_size = sys.ioctl_int(kvm.fd(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (mmap_size < 0) return fail("KVM_GET_VCPU_MMAP_SIZE", -mmap_size, path);
  if (size_t(mmap_size) < sizeof(kvm_run)) {
    return fail("KVM_GET_VCPU_MMAP_SIZE", 0, "kvm_run mapping of " + std::to_string(mmap_size) +
                                                 " bytes is smaller than struct kvm_run");
  }
  kvm.vcpu_mmap_size_ = size_t(mmap_size);
  // KVM_CAP_MAX_VCPUS may be absent on old kernels; KVM_CAP_NR_VCPUS is the recommended limit.
  int max = PINLESS_TRY(kvm.check_extension(KVM_CAP_MAX_VCPUS));
  if (max <= 0) max = PINLESS_TRY(kvm.check_extension(KVM_CAP_NR_VCPUS));
  if (max <= 0) max = 4;  // documented default when neither answers
  kvm.max_vcpus_ = unsigned(max);
  kvm.tsc_deadline_ = PINLESS_TRY(kvm.check_extension(KVM_CAP_TSC_DEADLINE_TIMER)) > 0;
  logger("kvm")->info("{}: API 12, up to {} vCPUs, kvm_run {} bytes", path, kvm.max_vcpus_,
                      kvm.vcpu_mmap_size_);
  return kvm;
}

Result<int> Kvm::check_extension(unsigned cap) const {
  int r = sys_->ioctl_int(fd(), KVM_CHECK_EXTENSION, cap);
  if (r < 0) return fail("KVM_CHECK_EXTENSION", -r, "capability " + std::to_string(cap));
  return r;
}

Result<std::vector<kvm_cpuid_entry2>> Kvm::supported_cpuid() const {
  // KVM_MAX_CPUID_ENTRIES is 256 in the kernel; grow on E2BIG anyway.
  for (uint32_t n = 256; n <= 4096; n *= 2) {
    size_t bytes = sizeof(kvm_cpuid2) + n * sizeof(kvm_cpuid_entry2);
    auto buf = std::make_unique<uint64_t[]>((bytes + 7) / 8);
    auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buf.get());
    std::memset(cpuid, 0, bytes);
    cpuid->nent = n;
    int r = sys_->ioctl(fd(), KVM_GET_SUPPORTED_CPUID, cpuid);
    if (r == -E2BIG) continue;
    if (r < 0) return fail("KVM_GET_SUPPORTED_CPUID", -r);
    if (cpuid->nent > n) return fail("KVM_GET_SUPPORTED_CPUID", 0, "kernel returned too many entries");
    return std::vector<kvm_cpuid_entry2>(cpuid->entries, cpuid->entries + cpuid->nent);
  }
  return fail("KVM_GET_SUPPORTED_CPUID", E2BIG);
}

}  // namespace pinless::vmm
