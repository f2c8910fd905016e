// VmControl: what the control API (docs/api.md) asks of a running VM. The API server calls
// it on the event-loop thread only, so an implementation may touch what that thread owns
// (the DMA domain and its fault queue); it must never block for long (it runs between the
// fault queue's reads). MicroVmControl (vmm/src/microvm_control.cpp) is the real one; the
// unit tests use a fake.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "pinless/base/result.h"

namespace pinless::vmm::api {

using Json = nlohmann::ordered_json;

class VmControl {
 public:
  virtual ~VmControl() = default;

  // "running", "paused", "shutting down" or "stopping" (the VM ended; pinless is exiting).
  virtual std::string state() const = 0;
  virtual Json info() const = 0;
  virtual Json counters() const = 0;
  // The startup timeline as JSON text, the schema of --timeline (docs/timeline.md).
  virtual std::string timeline_json() const = 0;

  // Errors carry an errno the API maps to an HTTP status: EINVAL 400 (bad request); EBUSY,
  // EALREADY or ENOSPC 409 (not in a state that allows it; ENOSPC: over the pin limit);
  // ENOTSUP 501, ETIMEDOUT 504, others 500.
  [[nodiscard]] virtual Status pause() = 0;
  [[nodiscard]] virtual Status resume() = 0;
  // Presses the ACPI power button; stops the VM if the guest has not powered off within
  // `timeout_ms`.
  [[nodiscard]] virtual Status shutdown(uint64_t timeout_ms) = 0;
  // Stops the VM now (vCPUs stopped; pinless releases everything and exits 0).
  [[nodiscard]] virtual Status stop() = 0;
  // vm.ram-region: the region at RAM offset `offset` switches to `dma` ("pin" or "fault"),
  // and/or (a fault region) maps `premap_pages` pages per fault and places its window by
  // `window` ("aligned", "forward", "hint"), from now on.
  struct RamRegionChange {
    uint64_t offset = 0;
    std::optional<std::string> dma;
    std::optional<uint64_t> premap_pages;
    std::optional<std::string> window;
  };
  [[nodiscard]] virtual Status set_ram_region(const RamRegionChange& change) = 0;
};

}  // namespace pinless::vmm::api
