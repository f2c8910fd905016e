// ViommuHost: what the virtio-iommu device model asks of the host. vmm implements it over
// iommufd (one host IOAS + HWPT per guest domain, MAP as IOAS_COPY from the never-attached
// guest-RAM IOAS, bypass as the identity HWPT, blocking as an empty IOAS's HWPT); tests use a
// recording fake. The model only calls it after validating a request against its own shadow
// state, so the host never sees an overlapping MAP, a splitting UNMAP or a bypass domain.
//
// Errors carry the errno the kernel gave; the model turns it into a virtio status:
// ENOMEM/ENOSPC -> NOMEM, EFAULT -> FAULT, EINVAL/EOPNOTSUPP/EBUSY from attach, attach_bypass
// or block -> UNSUPP, ENOENT from unmap -> OK, anything else -> DEVERR.
//
// Threading: the model calls every method with its own mutex held, from whichever thread
// calls into the model (a vCPU thread for requests and config writes, the event loop for
// reset). An implementation must not call back into the model. Ownership: the model holds a
// reference; the host must outlive it. The host starts with every endpoint in bypass (the
// identity HWPT vmm attaches before the device exists); everything after that is driven by
// the model.
#pragma once

#include <cstdint>
#include <vector>

#include "pinless/base/result.h"
#include "pinless/base/types.h"

namespace pinless::virtio {

// Permissions of one DMA mapping; at least one is set in every host map() call.
struct DmaAccess {
  bool read = false;
  bool write = false;
  constexpr bool operator==(const DmaAccess&) const = default;
};

class ViommuHost {
 public:
  virtual ~ViommuHost() = default;

  // Translates `endpoint` through guest domain `domain`, creating the host domain on first
  // use (an atomic replace of whatever the endpoint used before: it is never briefly in
  // bypass). On failure the endpoint keeps its previous translation; if the domain was new,
  // the model calls destroy_domain(domain) next so that anything half-created is freed.
  [[nodiscard]] virtual Status attach(uint32_t endpoint, uint32_t domain) = 0;
  // Identity translation: the endpoint sees guest-physical addresses (bypass).
  [[nodiscard]] virtual Status attach_bypass(uint32_t endpoint) = 0;
  // No DMA at all for the endpoint.
  [[nodiscard]] virtual Status block(uint32_t endpoint) = 0;

  // Maps `iova` (never empty, never over a reserved range, never overlapping a previous map
  // of this domain) to guest-physical `gpa`. EFAULT when [gpa, gpa + size) is not entirely
  // guest RAM (an implementation over IOAS_COPY turns the ENOENT of a source hole into
  // EFAULT). Atomic: on failure nothing of the range is mapped.
  [[nodiscard]] virtual Status map(uint32_t domain, Range<Iova> iova, Gpa gpa,
                                   DmaAccess access) = 0;
  // Unmaps exactly one earlier map() of this domain (same range). ENOENT is accepted.
  [[nodiscard]] virtual Status unmap(uint32_t domain, Range<Iova> iova) = 0;
  // The last endpoint has left `domain` (or a first attach to it failed): unmap everything
  // and free it. No endpoint uses it any more. A no-op for a domain the host does not know.
  virtual void destroy_domain(uint32_t domain) = 0;

  // IOVA ranges the host can never map for `endpoint` whatever its domain (the holes of the
  // host IOMMU: MSI window, reserved regions). Reported to the guest by PROBE and refused in
  // MAP. Must not change while the model lives: the model caches it until reset. A range may
  // end at 2^64 (start + size wraps to 0); empty ranges are ignored.
  virtual std::vector<Range<Iova>> reserved(uint32_t endpoint) = 0;
};

}  // namespace pinless::virtio
