// I8042: the PS/2 keyboard controller at 0x60..0x64 (register it with size 5), there so that
// Linux's i8042 driver probes quickly and "reboot" can reset the machine: command 0xfe on
// port 0x64 calls the reset callback. Implements the controller commands Linux issues while
// probing (read/write command byte, self-tests, port enable/disable, output port writes) and
// answers the keyboard's own probe (ACK, GET ID, RESET) when an IRQ 1 callback is given; the
// AUX (mouse) port reports itself absent so Linux skips it without waiting on timeouts.
// Offsets 1..3 (0x61..0x63, the system control port) read 0 and ignore writes.
// Thread-safe: one mutex; callbacks run with it held and must not call back into the device.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>

#include "pinless/base/log.h"
#include "pinless/pci/io_device.h"

namespace pinless::vmm::devices {

class I8042 final : public pci::IoDevice {
 public:
  using ResetFn = std::function<void()>;
  using IrqFn = std::function<void(bool level)>;

  static constexpr uint64_t kDataPort = 0;     // 0x60
  static constexpr uint64_t kCommandPort = 4;  // 0x64 (status on read)

  // `irq1` drives the keyboard interrupt line; without it the keyboard device does not
  // answer (guests should then boot with i8042.dumbkbd, as for Firecracker).
  explicit I8042(ResetFn reset, IrqFn irq1 = nullptr);
  I8042(const I8042&) = delete;
  I8042& operator=(const I8042&) = delete;

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  enum class Source { kController, kKeyboard };
  uint8_t read_status() const;
  uint8_t read_data();
  void command(uint8_t cmd);
  void data(uint8_t value);
  void keyboard_command(uint8_t value);
  void push(uint8_t byte, Source source);
  void update_irq();

  mutable std::mutex mu_;
  ResetFn reset_;
  IrqFn irq1_;
  struct Out {
    uint8_t byte;
    Source source;
  };
  std::deque<Out> out_;         // output buffer (the real one holds one byte; we queue)
  uint8_t ctr_ = 0x45;          // command byte: KBDINT | SYSFLAG | XLATE (mouse off)
  uint8_t pending_command_ = 0; // controller command awaiting its data byte on port 0x60
  uint8_t pending_kbd_ = 0;     // keyboard command awaiting its parameter byte
  bool last_was_command_ = false;
  bool irq_level_ = false;
  RateLimit unknown_{5, 10000};
};

}  // namespace pinless::vmm::devices
