#include "pinless/vmm/devices/i8042.h"

#include <algorithm>

namespace pinless::vmm::devices {
namespace {

constexpr uint8_t kStatusObf = 0x01;
constexpr uint8_t kStatusSys = 0x04;
constexpr uint8_t kStatusCmd = 0x08;
constexpr uint8_t kStatusUnlocked = 0x10;  // keyboard not inhibited

constexpr uint8_t kCtrKbdInt = 0x01;
constexpr uint8_t kCtrSysFlag = 0x04;
constexpr uint8_t kCtrKbdDis = 0x10;
constexpr uint8_t kCtrAuxDis = 0x20;

constexpr uint8_t kKbdAck = 0xfa;
constexpr uint8_t kKbdResend = 0xfe;

}  // namespace

I8042::I8042(ResetFn reset, IrqFn irq1) : reset_(std::move(reset)), irq1_(std::move(irq1)) {}

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  // Guest-controlled offset and size: the registers are bytes; only the first byte of a
  // wider access reaches a register, the rest read as 0xff.
  std::fill(data.begin(), data.end(), 0xff);
  if (data.empty()) return;
  switch (offset) {
    case kDataPort: data[0] = read_data(); break;
    case kCommandPort: data[0] = read_status(); break;
    default: data[0] = 0; break;  // 0x61..0x63: no speaker, no NMI status
  }
  update_irq();
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  if (data.empty()) return;
  switch (offset) {
    case kDataPort: this->data(data[0]); break;
    case kCommandPort: command(data[0]); break;
    default: break;
  }
  update_irq();
}

uint8_t I8042::read_status() const {
  uint8_t s = kStatusUnlocked;
  if (!out_.empty()) s |= kStatusObf;
  if (ctr_ & kCtrSysFlag) s |= kStatusSys;
  if (last_was_command_) s |= kStatusCmd;
  return s;  // IBF is never set: we consume every write at once
}

uint8_t I8042::read_data() {
  if (out_.empty()) return 0;
  uint8_t b = out_.front().byte;
  out_.pop_front();
  return b;
}

void I8042::push(uint8_t byte, Source source) {
  // The real output buffer holds one byte; a controller response replaces whatever the guest
  // left unread, so a probe that gave up on one answer never reads it as the next one.
  if (source == Source::kController) out_.clear();
  if (out_.size() < 16) out_.push_back({byte, source});
}

void I8042::command(uint8_t cmd) {
  last_was_command_ = true;
  pending_command_ = 0;
  switch (cmd) {
    case 0x20: push(ctr_, Source::kController); break;  // read command byte
    case 0x60:                                           // write command byte
    case 0xd1:                                           // write output port
    case 0xd2:                                           // write keyboard output buffer
    case 0xd3:                                           // write AUX output buffer
    case 0xd4:                                           // write to the AUX device
      pending_command_ = cmd;
      break;
    case 0xa7: ctr_ |= kCtrAuxDis; break;
    case 0xa8: ctr_ &= ~kCtrAuxDis; break;
    case 0xa9: push(0x01, Source::kController); break;  // AUX test: clock stuck, no mouse
    case 0xaa:                                           // self-test passed
      ctr_ |= kCtrSysFlag;
      push(0x55, Source::kController);
      break;
    case 0xab: push(0x00, Source::kController); break;  // keyboard interface test passed
    case 0xad: ctr_ |= kCtrKbdDis; break;
    case 0xae: ctr_ &= ~kCtrKbdDis; break;
    case 0xc0: push(0x00, Source::kController); break;  // read input port
    case 0xd0: push(0x01, Source::kController); break;  // output port: reset line inactive
    case 0xfe:
      logger("dev")->info("i8042: guest requested a reset");
      if (reset_) reset_();
      break;
    default:
      if (cmd >= 0xf0 && (cmd & 0x01) == 0) {  // pulse output lines including reset (bit 0)
        if (reset_) reset_();
      } else if (cmd < 0xf0 && unknown_.allow()) {
        logger("dev")->warn("i8042: unsupported controller command {:#04x} ignored", cmd);
      }
      break;
  }
}

void I8042::data(uint8_t value) {
  last_was_command_ = false;
  uint8_t cmd = pending_command_;
  pending_command_ = 0;
  switch (cmd) {
    case 0x60: ctr_ = value; break;
    case 0xd1:
      if ((value & 0x01) == 0) {  // output port bit 0 low holds the CPU in reset
        logger("dev")->info("i8042: guest requested a reset through the output port");
        if (reset_) reset_();
      }
      break;
    case 0xd2: push(value, Source::kKeyboard); break;
    // Echoed without the AUX flag: Linux's AUX loopback test fails at once and the mouse
    // port is treated as absent (no 250 ms interrupt-test wait).
    case 0xd3: push(value, Source::kController); break;
    case 0xd4: break;  // no mouse to talk to
    default: keyboard_command(value); break;
  }
}

void I8042::keyboard_command(uint8_t value) {
  // Without an IRQ line the answers could never be delivered; stay silent like a missing
  // keyboard.
  if (!irq1_) return;
  if (pending_kbd_ != 0) {  // parameter byte of LEDs / typematic / scancode set
    uint8_t cmd = pending_kbd_;
    pending_kbd_ = 0;
    push(kKbdAck, Source::kKeyboard);
    if (cmd == 0xf0 && value == 0) push(0x02, Source::kKeyboard);  // current set: 2
    return;
  }
  switch (value) {
    case 0xed: case 0xf0: case 0xf3:
      pending_kbd_ = value;
      push(kKbdAck, Source::kKeyboard);
      break;
    case 0xee: push(0xee, Source::kKeyboard); break;  // echo
    case 0xf2:                                          // identify: MF2 keyboard
      push(kKbdAck, Source::kKeyboard);
      push(0xab, Source::kKeyboard);
      push(0x83, Source::kKeyboard);
      break;
    case 0xf4: case 0xf5: case 0xf6: case 0xf7: case 0xf8: case 0xf9: case 0xfa:
      push(kKbdAck, Source::kKeyboard);
      break;
    case 0xff:  // reset: ACK, then basic assurance test passed
      push(kKbdAck, Source::kKeyboard);
      push(0xaa, Source::kKeyboard);
      break;
    default: push(kKbdResend, Source::kKeyboard); break;
  }
}

void I8042::update_irq() {
  bool level = irq1_ && !out_.empty() && out_.front().source == Source::kKeyboard &&
               (ctr_ & kCtrKbdInt) != 0;
  if (level == irq_level_) return;
  irq_level_ = level;
  irq1_(level);
}

}  // namespace pinless::vmm::devices
