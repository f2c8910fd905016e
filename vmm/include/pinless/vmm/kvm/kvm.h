// Kvm: the open /dev/kvm system fd. Checks the API version (12) and every capability pinless
// relies on, naming the missing one; answers system-wide queries (vCPU limits, kvm_run size,
// supported CPUID). Owns the fd. Thread-compatible (immutable after open()).
#pragma once

#include "pinless/base/linux_kvm.h"

#include <cstdint>
#include <string>
#include <vector>

#include "pinless/base/fd.h"
#include "pinless/base/result.h"
#include "pinless/base/sys.h"

namespace pinless::vmm {

struct KvmCapability {
  unsigned cap;
  const char* name;
};

// What pinless needs from the host KVM (checked by Kvm::open).
std::vector<KvmCapability> required_kvm_capabilities();

class Kvm {
 public:
  static constexpr int kApiVersion = 12;
  static constexpr const char* kNoKvmMessage =
      "no /dev/kvm: this host has no KVM; run pinless inside the testbed: "
      "scripts/testbed run -- build/pinless run ...";

  [[nodiscard]] static Result<Kvm> open(Sys& sys, const char* path = "/dev/kvm");

  Sys& sys() const { return *sys_; }
  int fd() const { return fd_.get(); }
  // Size of the kvm_run mapping of a vCPU (KVM_GET_VCPU_MMAP_SIZE).
  size_t vcpu_mmap_size() const { return vcpu_mmap_size_; }
  // Hard limit of vCPUs per VM (KVM_CAP_MAX_VCPUS, falling back to KVM_CAP_NR_VCPUS).
  unsigned max_vcpus() const { return max_vcpus_; }
  bool has_tsc_deadline_timer() const { return tsc_deadline_; }
  // KVM_CHECK_EXTENSION: > 0 when supported (some capabilities return a value).
  [[nodiscard]] Result<int> check_extension(unsigned cap) const;
  // KVM_GET_SUPPORTED_CPUID.
  [[nodiscard]] Result<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;

 private:
  Kvm(Sys* sys, UniqueFd fd) : sys_(sys), fd_(std::move(fd)) {}

  Sys* sys_;
  UniqueFd fd_;
  size_t vcpu_mmap_size_ = 0;
  unsigned max_vcpus_ = 1;
  bool tsc_deadline_ = false;
};

}  // namespace pinless::vmm
