// EduVfio: drives one QEMU edu device (PCI 1234:11e8) through an opened VFIO
// device fd, whichever way it was obtained (type1 group or iommufd cdev):
// region info, BAR0 mmap, bus master (vfio-pci leaves it off), MSI to an
// eventfd, DMA both ways through IOVAs the caller has mapped, and MSI counting.
// Failures end the program through fail(). Single-threaded.
#pragma once

#include <cstdint>
#include <string>

#include "testbed_util.h"

namespace pinless::testbed {

// edu registers and limits (see /work/shared/TESTBED.md "Traps").
namespace edu {
inline constexpr uint32_t kId = 0x00, kIdValue = 0x010000ed, kLiveness = 0x04;
inline constexpr uint32_t kIrqStatus = 0x24, kIrqRaise = 0x60, kIrqAck = 0x64;
inline constexpr uint32_t kDmaSrc = 0x80, kDmaDst = 0x88, kDmaCount = 0x90, kDmaCmd = 0x98;
inline constexpr uint32_t kCmdStart = 1, kCmdToRam = 2, kCmdIrq = 4, kDmaIrqStatus = 0x100;
inline constexpr uint64_t kBuffer = 0x40000;
inline constexpr uint32_t kMaxDma = 4095;              // a DMA ending at 0x41000 aborts QEMU 7.2
inline constexpr uint64_t kDmaMask = (1ull << 28) - 1;  // edu clamps higher addresses
}  // namespace edu

struct EduDmaResult {
  uint64_t to_dev_us = 0, to_ram_us = 0;
  uint32_t bytes = 0;
  uint64_t msi_events = 0;  // eventfd counts seen during the two DMAs
};

struct EduMsiResult {
  unsigned raised = 0;
  uint64_t received = 0;  // eventfd counts (>= raised: a spurious extra edge is tolerated)
  uint64_t first_us = 0, avg_us = 0, max_us = 0;
};

class EduVfio {
 public:
  // Takes the device fd; `bdf` only names the device in messages.
  EduVfio(int device_fd, std::string bdf);
  ~EduVfio();
  EduVfio(const EduVfio&) = delete;
  EduVfio& operator=(const EduVfio&) = delete;

  // GET_INFO, BAR0 + config region info, BAR0 mmap, id and liveness check.
  void open_bar0();
  // Sets PCI_COMMAND memory + bus master through the config region.
  void enable_bus_master();
  // VFIO_DEVICE_SET_IRQS: MSI vector 0 -> a fresh eventfd.
  void enable_msi();
  void disable_msi();

  // RAM (src_iova) -> edu buffer -> RAM (dst_iova); `src`/`dst` are the CPU
  // views of those IOVAs. Fills src with a pattern and verifies dst.
  EduDmaResult dma_round_trip(uint8_t* src, uint64_t src_iova, uint8_t* dst, uint64_t dst_iova,
                              uint32_t bytes);
  // Raises `n` interrupts through register 0x60 and waits for each MSI.
  EduMsiResult raise_msis(unsigned n);

  uint32_t id() const { return id_; }
  unsigned msi_vectors() const { return msi_count_; }

 private:
  uint32_t r32(uint32_t off) const;
  void w32(uint32_t off, uint32_t v);
  void w64(uint32_t off, uint64_t v);
  // Waits up to timeout_ms for the eventfd; returns its count (0 on timeout).
  uint64_t wait_irq(int timeout_ms);
  uint64_t dma(uint64_t src, uint64_t dst, uint32_t count, uint32_t cmd);

  int device_;
  std::string bdf_;
  volatile uint8_t* bar_ = nullptr;
  size_t bar_map_size_ = 0;
  uint64_t config_offset_ = 0;
  uint32_t id_ = 0;
  Fd irq_;
  unsigned msi_count_ = 0;
};

}  // namespace pinless::testbed
