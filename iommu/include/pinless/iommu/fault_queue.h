// FaultQueue: the I/O half of fault-driven DMA. When the VMM's event loop sees the iommufd
// fault fd readable it calls on_readable(), which handles what is queued without ever
// blocking: read() whole groups in multiples of 40-byte records (0 = empty), let the
// FaultEngine plan the batch, execute reclaim UNMAPs and coalesced MAPs through the
// DmaBackend, then answer every group of the batch exactly once, in one write() of 8-byte
// responses. A read that did not fill the buffer ends the call (the queue was drained, or the
// next group did not fit the space left): readiness must be level-triggered, so a fault fd
// that is still readable is simply reported again (pinless's EventLoop is, per wait; see
// event_loop.h). After max_reads reads it returns with Drained::more set: call it again. This
// saves the confirming empty read() per wakeup, a syscall per fault when faults come singly.
// Borrows the fault fd (owned by IommufdFault), the engine and the backend; all must outlive
// it. Event-loop thread only (never a vCPU thread).
#pragma once

#include <cstdint>
#include <vector>

#include "pinless/base/log.h"
#include "pinless/base/sys.h"
#include "pinless/iommu/dma_backend.h"
#include "pinless/iommu/fault_engine.h"

namespace pinless::iommu {

class FaultQueue {
 public:
  struct Options {
    size_t batch_records = 64;    // records per read() at first
    size_t max_records = 4096;    // the read buffer grows to this for one huge group (EINVAL)
    int max_reads = 16;           // per on_readable(): leave the loop room for other work
  };
  FaultQueue(Sys& sys, int fault_fd, FaultEngine& engine, DmaBackend& backend) : FaultQueue(sys, fault_fd, engine, backend, Options{}) {}
  FaultQueue(Sys& sys, int fault_fd, FaultEngine& engine, DmaBackend& backend, Options opt);

  struct Drained {
    uint64_t reads = 0, records = 0, groups = 0, invalid = 0, maps = 0, unmaps = 0;
    uint64_t refused = 0;  // answers the kernel refused (EINVAL: e.g. the device was detached
                           // and the kernel answered its groups itself)
    bool more = false;  // stopped at max_reads with the queue possibly non-empty
  };
  // Handles what is queued now. An error means the fault fd itself failed (not a guest
  // problem); groups read before the error have been answered.
  Result<Drained> on_readable();

  // Unmaps every window the engine mapped (teardown), or those of one engine region (a
  // switch to the pin policy). Errors are logged. Each call is timed into the engine's
  // per-region counters, as the fault path's MAP/UNMAP calls are.
  void unmap_all();
  void unmap_region(uint32_t region);

 private:
  // Reads one batch; 0 records = queue empty.
  Result<size_t> read_batch();
  // Returns how many answers the kernel refused (they are skipped, the rest still sent).
  Result<uint64_t> answer(const std::vector<GroupResponse>& responses);
  void unmap_runs(const std::vector<DmaRun>& runs, const char* why);

  Sys& sys_;
  int fd_;
  FaultEngine& engine_;
  DmaBackend& backend_;
  Options opt_;
  std::vector<uint8_t> buf_;           // raw records
  std::vector<FaultRecord> records_;   // parsed
  std::vector<uint8_t> out_;           // raw responses
  FaultPlan plan_;
  RateLimit refused_warn_;
};

}  // namespace pinless::iommu
