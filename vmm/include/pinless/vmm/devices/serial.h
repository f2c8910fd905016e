// Serial8250: a 16550A UART at COM1 (0x3f8, 8 ports), good enough for Linux's 8250 driver as
// console: divisor latch, FIFO-reporting IIR, loopback (so autoconfig identifies a 16550A),
// THRE/RX-data interrupts with 16550 semantics. Transmitted bytes go to an output sink (a
// console fd, not owned, or a function); bytes are buffered and flushed on newline, when the
// buffer fills, when the guest writes IER (Linux's console write saves and restores IER
// around each message, and stop_tx clears ETBEI), on flush() and on destruction.
// Received bytes come from push_input(). The interrupt callback is called with the new line
// level each time it changes.
// Thread-safe: one mutex guards the registers; the interrupt and output callbacks run with
// it held (so level changes reach KVM in order) and must not call back into the device.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <vector>

#include "pinless/base/log.h"
#include "pinless/vmm/io.h"

namespace pinless::vmm::devices {

class Serial8250 final : public IoDevice {
 public:
  using IrqFn = std::function<void(bool level)>;
  using OutputFn = std::function<void(std::span<const uint8_t> bytes)>;

  // Register offsets from the base port.
  static constexpr uint64_t kData = 0;  // RBR (read) / THR (write) / DLL (DLAB=1)
  static constexpr uint64_t kIer = 1;   // IER / DLM (DLAB=1)
  static constexpr uint64_t kIir = 2;   // IIR (read) / FCR (write)
  static constexpr uint64_t kLcr = 3;
  static constexpr uint64_t kMcr = 4;
  static constexpr uint64_t kLsr = 5;
  static constexpr uint64_t kMsr = 6;
  static constexpr uint64_t kScr = 7;
  static constexpr size_t kInputLimit = 64 * 1024;  // queued RX bytes beyond this are dropped

  // Output to `out_fd` (not owned; < 0 discards output).
  Serial8250(int out_fd, IrqFn irq);
  Serial8250(OutputFn out, IrqFn irq);
  ~Serial8250() override;
  Serial8250(const Serial8250&) = delete;
  Serial8250& operator=(const Serial8250&) = delete;

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Queues bytes for the guest to receive (e.g. from stdin); raises the RX interrupt if enabled.
  void push_input(std::span<const uint8_t> bytes);
  // Writes out any buffered output.
  void flush();
  // Bytes dropped because the input queue was full.
  uint64_t dropped_input() const;

 private:
  uint8_t read_reg(uint64_t offset);
  void write_reg(uint64_t offset, uint8_t value);
  uint8_t iir() const;
  uint8_t lsr() const;
  uint8_t msr() const;
  bool dlab() const { return (lcr_ & 0x80) != 0; }
  bool loopback() const { return (mcr_ & 0x10) != 0; }
  void transmit(uint8_t byte);
  void flush_locked();
  void update_irq();

  mutable std::mutex mu_;
  OutputFn out_;
  IrqFn irq_;
  std::vector<uint8_t> out_buf_;
  std::deque<uint8_t> rx_;
  uint64_t dropped_ = 0;
  uint8_t ier_ = 0;
  uint8_t lcr_ = 0x03;  // 8N1
  uint8_t mcr_ = 0x08;  // OUT2
  uint8_t scr_ = 0;
  uint8_t dll_ = 0x0c;  // 9600 baud
  uint8_t dlm_ = 0;
  bool fifo_enabled_ = false;
  bool thr_pending_ = false;  // THRE interrupt armed and not yet acknowledged by an IIR read
  bool irq_level_ = false;
  RateLimit bad_access_{5, 10000};
};

}  // namespace pinless::vmm::devices
