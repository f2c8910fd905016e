#include "pinless/vmm/devices/serial.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace pinless::vmm::devices {
namespace {

constexpr uint8_t kIerRx = 0x01;    // ERBFI: received data available
constexpr uint8_t kIerThre = 0x02;  // ETBEI: transmitter holding register empty
constexpr uint8_t kIerMask = 0x0f;  // the upper nibble reads as zero on a 16550A

constexpr uint8_t kIirNone = 0x01;
constexpr uint8_t kIirThre = 0x02;
constexpr uint8_t kIirRx = 0x04;
constexpr uint8_t kIirFifo = 0xc0;  // "FIFOs enabled" as a 16550A reports them

constexpr uint8_t kLsrDr = 0x01;
constexpr uint8_t kLsrThre = 0x20;
constexpr uint8_t kLsrTemt = 0x40;

constexpr uint8_t kMcrMask = 0x1f;
constexpr uint8_t kMsrCts = 0x10, kMsrDsr = 0x20, kMsrRi = 0x40, kMsrDcd = 0x80;

constexpr size_t kFlushEvery = 256;  // bytes without a newline that trigger a flush anyway
constexpr int kFinalWaitMs = 1000;   // at VM end, how long a console may make no progress

// One non-blocking write of as much of `bytes` as the console takes, retrying on EINTR.
ssize_t write_some(int fd, std::span<const uint8_t> bytes) {
  for (;;) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
  }
}

}  // namespace

Serial8250::Serial8250(int out_fd, IrqFn irq) : irq_(std::move(irq)) {
  if (out_fd < 0) return;
  out_fd_ = out_fd;
  out_fd_flags_ = ::fcntl(out_fd, F_GETFL);
  if (out_fd_flags_ >= 0 && (out_fd_flags_ & O_NONBLOCK) == 0 &&
      ::fcntl(out_fd, F_SETFL, out_fd_flags_ | O_NONBLOCK) != 0) {
    logger("dev")->warn("serial: cannot make the console non-blocking ({}); a console that stops "
                        "reading will stop the guest", std::strerror(errno));
  }
  out_ = [out_fd](std::span<const uint8_t> bytes) { return write_some(out_fd, bytes); };
}

Serial8250::Serial8250(OutputFn out, IrqFn irq) : irq_(std::move(irq)) {
  if (out) {
    out_ = [fn = std::move(out)](std::span<const uint8_t> bytes) {
      fn(bytes);
      return ssize_t(bytes.size());
    };
  }
}

Serial8250::~Serial8250() {
  std::lock_guard lock(mu_);
  flush_locked();
  // VM end: the guest is gone, so waiting costs it nothing; a console that makes no progress
  // for kFinalWaitMs is not waited for any longer (pinless must still exit).
  while (!out_buf_.empty() && out_fd_ >= 0) {
    pollfd p{out_fd_, POLLOUT, 0};
    int r = ::poll(&p, 1, kFinalWaitMs);
    if (r < 0 && errno == EINTR) continue;
    size_t before = out_buf_.size();
    if (r > 0) flush_locked();
    if (out_buf_.size() == before) break;
  }
  if (!out_buf_.empty()) drop_output(out_buf_.size(), "the console stopped reading at VM end");
  if (out_fd_ >= 0 && out_fd_flags_ >= 0) (void)::fcntl(out_fd_, F_SETFL, out_fd_flags_);
}

void Serial8250::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  // Guest-controlled size: the UART has byte registers; a wider read returns each register
  // in turn (as on an ISA bus that splits the access), anything past port 7 reads 0xff.
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = offset + i < 8 ? read_reg(offset + i) : 0xff;
  }
  update_irq();
}

void Serial8250::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    if (offset + i < 8) {
      write_reg(offset + i, data[i]);
    } else if (bad_access_.allow()) {
      logger("dev")->warn("serial: write past the last register (offset {:#x})", offset + i);
    }
  }
  update_irq();
}

uint8_t Serial8250::read_reg(uint64_t offset) {
  switch (offset) {
    case kData: {
      if (dlab()) return dll_;
      if (rx_.empty()) return 0;
      uint8_t b = rx_.front();
      rx_.pop_front();
      return b;
    }
    case kIer:
      return dlab() ? dlm_ : ier_;
    case kIir: {
      uint8_t v = iir();
      // Reading IIR while it reports THRE acknowledges that interrupt (16550 semantics).
      if ((v & 0x0f) == kIirThre) thr_pending_ = false;
      return v;
    }
    case kLcr: return lcr_;
    case kMcr: return mcr_;
    case kLsr: return lsr();
    case kMsr: return msr();
    case kScr: return scr_;
    default: return 0xff;
  }
}

void Serial8250::write_reg(uint64_t offset, uint8_t value) {
  switch (offset) {
    case kData:
      if (dlab()) {
        dll_ = value;
      } else {
        transmit(value);
        // The byte leaves at once, so THR is empty again: re-arm the THRE interrupt.
        thr_pending_ = true;
      }
      break;
    case kIer:
      if (dlab()) {
        dlm_ = value;
        break;
      }
      ier_ = value & kIerMask;
      // Any IER write with ETBEI set re-arms THRE (THR is always empty here); Linux's
      // start_tx and its THRE-bug probe rely on this.
      thr_pending_ = (ier_ & kIerThre) != 0;
      flush_locked();
      break;
    case kIir:  // FCR
      fifo_enabled_ = (value & 0x01) != 0;
      if ((value & 0x02) != 0) rx_.clear();  // clear RX FIFO; TX has nothing queued
      break;
    case kLcr: lcr_ = value; break;
    case kMcr: mcr_ = value & kMcrMask; break;
    case kLsr: break;  // read-only (factory test register on real parts)
    case kMsr: break;  // read-only
    case kScr: scr_ = value; break;
    default: break;
  }
}

uint8_t Serial8250::iir() const {
  uint8_t fifo = fifo_enabled_ ? kIirFifo : 0;
  if ((ier_ & kIerRx) != 0 && !rx_.empty()) return fifo | kIirRx;
  if ((ier_ & kIerThre) != 0 && thr_pending_) return fifo | kIirThre;
  return fifo | kIirNone;
}

uint8_t Serial8250::lsr() const {
  // Transmission is instantaneous: THR and the shift register are always empty.
  return kLsrThre | kLsrTemt | (rx_.empty() ? 0 : kLsrDr);
}

uint8_t Serial8250::msr() const {
  if (loopback()) {
    // Loopback wires RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD; Linux's autoconfig checks this.
    uint8_t v = 0;
    if (mcr_ & 0x02) v |= kMsrCts;
    if (mcr_ & 0x01) v |= kMsrDsr;
    if (mcr_ & 0x04) v |= kMsrRi;
    if (mcr_ & 0x08) v |= kMsrDcd;
    return v;
  }
  return kMsrDcd | kMsrDsr | kMsrCts;  // a modem that is always there and ready
}

void Serial8250::transmit(uint8_t byte) {
  if (loopback()) {
    if (rx_.size() < kInputLimit) rx_.push_back(byte);
    return;
  }
  if (!out_) return;
  if (out_buf_.size() >= kOutputLimit) flush_locked();  // make room if the console can take some
  if (out_buf_.size() >= kOutputLimit) {
    drop_output(1, "the console is not reading");
    return;
  }
  dropping_ = false;
  out_buf_.push_back(byte);
  ++unflushed_;
  if (byte == '\n' || unflushed_ >= kFlushEvery) flush_locked();
}

void Serial8250::flush_locked() {
  unflushed_ = 0;
  if (out_buf_.empty() || !out_) return;
  ssize_t n = out_(out_buf_);
  if (n < 0) {
    drop_output(out_buf_.size(), "the console write failed");
    out_buf_.clear();
    return;
  }
  out_buf_.erase(out_buf_.begin(), out_buf_.begin() + n);
}

void Serial8250::drop_output(size_t n, const char* why) {
  dropped_output_ += n;
  if (!dropping_ && drop_warn_.allow()) {
    logger("dev")->warn("serial: {}: guest output dropped ({} bytes so far)", why, dropped_output_);
  }
  dropping_ = true;
}

void Serial8250::flush() {
  std::lock_guard lock(mu_);
  flush_locked();
}

uint64_t Serial8250::dropped_output() const {
  std::lock_guard lock(mu_);
  return dropped_output_;
}

void Serial8250::push_input(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mu_);
  for (uint8_t b : bytes) {
    if (rx_.size() >= kInputLimit) {
      ++dropped_;
      continue;
    }
    rx_.push_back(b);
  }
  update_irq();
}

uint64_t Serial8250::dropped_input() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

void Serial8250::update_irq() {
  bool level = (iir() & kIirNone) == 0;
  if (level == irq_level_) return;
  irq_level_ = level;
  if (irq_) irq_(level);
}

}  // namespace pinless::vmm::devices
