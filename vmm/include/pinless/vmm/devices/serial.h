// Serial8250: a 16550A UART at COM1 (0x3f8, 8 ports), good enough for Linux's 8250 driver as
// console: divisor latch, FIFO-reporting IIR, loopback (so autoconfig identifies a 16550A),
// THRE/RX-data interrupts with 16550 semantics. Transmitted bytes go to an output sink (a
// console fd, not owned, or a function); bytes are buffered and flushed on newline, when 256
// bytes have gathered, when the guest writes IER (Linux's console write saves and restores IER
// around each message, and stop_tx clears ETBEI), on flush() and on destruction.
// The console must never stall the guest: a vCPU writes it under the device lock, and a
// reader of pinless's stdout that stops reading would otherwise stop the guest with it. So
// the fd is switched to non-blocking (its flags are restored on destruction; give the device
// an open file description of its own, see builder.cpp), what the console does not take now
// stays in a bounded buffer (kOutputLimit) and goes out, in order, at the next flush, and
// output past the bound is dropped, counted, with a rate-limited warning. This keeps one
// thread and no timers; the price is that a console that stalls and then recovers while the
// guest is silent gets the rest at the guest's next output, or at the latest at VM end, when
// the destructor waits for it (giving up on a console that makes no progress for a second).
// Received bytes come from push_input(). The interrupt callback is called with the new line
// level each time it changes.
// Thread-safe: one mutex guards the registers; the interrupt and output callbacks run with
// it held (so level changes reach KVM in order) and must not call back into the device.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <vector>

#include "pinless/base/log.h"
#include "pinless/pci/io_device.h"

namespace pinless::vmm::devices {

class Serial8250 final : public pci::IoDevice {
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
  static constexpr size_t kOutputLimit = 1024 * 1024;  // output the console has not taken yet

  // Output to `out_fd` (not owned, made non-blocking until destruction; < 0 discards output).
  Serial8250(int out_fd, IrqFn irq);
  Serial8250(OutputFn out, IrqFn irq);
  ~Serial8250() override;
  Serial8250(const Serial8250&) = delete;
  Serial8250& operator=(const Serial8250&) = delete;

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Queues bytes for the guest to receive (e.g. from stdin); raises the RX interrupt if enabled.
  void push_input(std::span<const uint8_t> bytes);
  // Writes out as much buffered output as the console takes now; never blocks.
  void flush();
  // Bytes dropped because the input queue was full.
  uint64_t dropped_input() const;
  // Guest output dropped because the console did not take it (buffer full, or a write error).
  uint64_t dropped_output() const;

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
  void drop_output(size_t n, const char* why);
  void update_irq();

  // Takes what the console accepts now and returns how many bytes that was; -1: the console
  // is broken (EPIPE, EIO, ...) and will take nothing more.
  using SinkFn = std::function<ssize_t(std::span<const uint8_t> bytes)>;

  mutable std::mutex mu_;
  SinkFn out_;
  IrqFn irq_;
  int out_fd_ = -1;       // for the final wait; -1 with a function sink
  int out_fd_flags_ = -1;  // to restore on destruction
  std::vector<uint8_t> out_buf_;
  size_t unflushed_ = 0;  // bytes added since the last flush attempt
  bool dropping_ = false;  // in a run of dropped bytes (one warning per run)
  uint64_t dropped_output_ = 0;
  RateLimit drop_warn_{3, 10000};
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
