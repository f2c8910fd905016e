#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "fakes/log_capture.h"
#include "pinless/vmm/devices/serial.h"

using namespace pinless::vmm::devices;

namespace {

struct Uart {
  std::string out;
  std::vector<bool> irqs;  // every level change, in order
  Serial8250 dev{[this](std::span<const uint8_t> b) { out.append(b.begin(), b.end()); },
                 [this](bool level) { irqs.push_back(level); }};

  uint8_t in(uint64_t reg) {
    uint8_t v = 0;
    dev.read(reg, std::span(&v, 1));
    return v;
  }
  void outb(uint64_t reg, uint8_t v) { dev.write(reg, std::span(&v, 1)); }
  bool irq() const { return !irqs.empty() && irqs.back(); }
  void send(const std::string& s) {
    for (char c : s) outb(Serial8250::kData, uint8_t(c));
  }
};

}  // namespace

TEST_CASE("serial: output is buffered until a newline, then flushed") {
  Uart u;
  u.send("hel");
  CHECK(u.out.empty());
  u.send("lo\n");
  CHECK(u.out == "hello\n");
  u.send("# ");
  u.dev.flush();
  CHECK(u.out == "hello\n# ");
}

TEST_CASE("serial: an IER write flushes a prompt without newline") {
  Uart u;
  u.send("login: ");
  u.outb(Serial8250::kIer, 0);
  CHECK(u.out == "login: ");
}

TEST_CASE("serial: LSR always reports an empty transmitter, DR only with input") {
  Uart u;
  CHECK(u.in(Serial8250::kLsr) == 0x60);
  const uint8_t in[] = {'x'};
  u.dev.push_input(in);
  CHECK(u.in(Serial8250::kLsr) == 0x61);
  CHECK(u.in(Serial8250::kData) == 'x');
  CHECK(u.in(Serial8250::kLsr) == 0x60);
}

TEST_CASE("serial: DLAB switches ports 0 and 1 to the divisor latch") {
  Uart u;
  u.outb(Serial8250::kLcr, 0x83);
  u.outb(Serial8250::kData, 0x01);  // 115200 baud
  u.outb(Serial8250::kIer, 0x00);
  CHECK(u.in(Serial8250::kData) == 0x01);
  CHECK(u.in(Serial8250::kIer) == 0x00);
  u.outb(Serial8250::kLcr, 0x03);
  u.dev.flush();
  CHECK(u.out.empty());  // the divisor write was not transmitted
  CHECK(u.in(Serial8250::kLcr) == 0x03);
}

TEST_CASE("serial: IIR reports FIFOs once enabled, and no interrupt") {
  Uart u;
  CHECK(u.in(Serial8250::kIir) == 0x01);
  u.outb(Serial8250::kIir, 0x07);  // FCR: enable and clear FIFOs
  CHECK(u.in(Serial8250::kIir) == 0xc1);
}

TEST_CASE("serial: THRE interrupt is raised on IER write, acknowledged by IIR, re-armed by THR") {
  Uart u;
  u.outb(Serial8250::kIer, 0x02);
  CHECK(u.irq());
  CHECK(u.in(Serial8250::kIir) == 0x02);
  CHECK_FALSE(u.irq());
  CHECK(u.in(Serial8250::kIir) == 0x01);  // acknowledged
  u.outb(Serial8250::kData, 'a');
  CHECK(u.irq());
  // Re-writing IER with ETBEI re-arms it too (Linux's start_tx and THRE probe).
  CHECK(u.in(Serial8250::kIir) == 0x02);
  u.outb(Serial8250::kIer, 0x02);
  CHECK(u.irq());
  u.outb(Serial8250::kIer, 0x00);
  CHECK_FALSE(u.irq());
}

TEST_CASE("serial: RX data interrupt has priority and clears when the FIFO is drained") {
  Uart u;
  u.outb(Serial8250::kIer, 0x01);
  CHECK_FALSE(u.irq());
  const uint8_t in[] = {'a', 'b'};
  u.dev.push_input(in);
  CHECK(u.irq());
  CHECK(u.in(Serial8250::kIir) == 0x04);
  CHECK(u.in(Serial8250::kData) == 'a');
  CHECK(u.irq());
  CHECK(u.in(Serial8250::kData) == 'b');
  CHECK_FALSE(u.irq());
  CHECK(u.irqs == std::vector<bool>{true, false});
}

TEST_CASE("serial: loopback routes THR to RBR and MCR to MSR, as Linux autoconfig checks") {
  Uart u;
  u.outb(Serial8250::kMcr, 0x1a);  // LOOP | OUT2 | RTS
  CHECK((u.in(Serial8250::kMsr) & 0xf0) == 0x90);
  u.outb(Serial8250::kData, 0x5a);
  CHECK(u.in(Serial8250::kData) == 0x5a);
  u.outb(Serial8250::kMcr, 0x08);
  u.dev.flush();
  CHECK(u.out.empty());
  CHECK((u.in(Serial8250::kMsr) & 0xb0) == 0xb0);  // DCD, DSR, CTS outside loopback
}

TEST_CASE("serial: scratch register and IER's reserved bits") {
  Uart u;
  u.outb(Serial8250::kScr, 0xa5);
  CHECK(u.in(Serial8250::kScr) == 0xa5);
  u.outb(Serial8250::kIer, 0xff);
  CHECK(u.in(Serial8250::kIer) == 0x0f);
}

TEST_CASE("serial: wide and out-of-range guest accesses do not crash") {
  Uart u;
  uint8_t buf[4] = {0, 0, 0, 0};
  u.dev.read(6, std::span(buf, 4));
  CHECK(buf[2] == 0xff);
  CHECK(buf[3] == 0xff);
  u.dev.write(100, std::span<const uint8_t>(buf, 4));
  u.dev.read(100, std::span(buf, 1));
  CHECK(buf[0] == 0xff);
}

TEST_CASE("serial: the input queue is bounded") {
  Uart u;
  std::vector<uint8_t> lots(Serial8250::kInputLimit + 10, 'z');
  u.dev.push_input(lots);
  CHECK(u.dev.dropped_input() == 10);
}

namespace {
// A pipe standing in for pinless's stdout; the test plays the reader, which does not read
// until it drains. The read end never blocks.
struct Console {
  int rd = -1, wr = -1;
  explicit Console(bool nonblocking_writes) {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC | (nonblocking_writes ? O_NONBLOCK : 0)) == 0);
    rd = p[0];
    wr = p[1];
    REQUIRE(::fcntl(rd, F_SETFL, ::fcntl(rd, F_GETFL) | O_NONBLOCK) == 0);
  }
  ~Console() {
    ::close(rd);
    ::close(wr);
  }
  // Whatever is in the pipe now.
  std::string take() {
    std::string got;
    char buf[4096];
    for (ssize_t n; (n = ::read(rd, buf, sizeof(buf))) > 0;) got.append(buf, size_t(n));
    return got;
  }
};

void send(Serial8250& dev, const std::string& s) {
  for (char c : s) {
    uint8_t v = uint8_t(c);
    dev.write(Serial8250::kData, std::span(&v, 1));
  }
}

// 256 KiB of numbered lines: four times what a pipe holds.
std::string lots_of_lines() {
  std::string out;
  for (int i = 0; out.size() < 256 * 1024; ++i) out += "line " + std::to_string(i) + " of the guest's boot log\n";
  return out;
}
}  // namespace

TEST_CASE("serial: a console that does not read never blocks the guest, and gets every byte in order later") {
  // Either way stdout may come: the device must not block on a blocking descriptor either.
  bool nonblocking = false;
  SUBCASE("non-blocking pipe") { nonblocking = true; }
  SUBCASE("blocking pipe") { nonblocking = false; }
  Console console(nonblocking);
  Serial8250 dev(console.wr, nullptr);
  // Would the guest's writes block? (Checked first so that a regression fails, not hangs.)
  REQUIRE((::fcntl(console.wr, F_GETFL) & O_NONBLOCK) != 0);
  const std::string text = lots_of_lines();
  send(dev, text);  // returns: the vCPU was never stuck on the console
  // The reader catches up; what did not fit in the pipe follows, in order, as it drains.
  std::string got;
  for (size_t last = SIZE_MAX; got.size() != last;) {
    last = got.size();
    got += console.take();
    dev.flush();
  }
  CHECK(got.size() == text.size());
  CHECK(got == text);
}

TEST_CASE("serial: output past the buffer is dropped and counted, with one warning; order is kept") {
  Console console(false);
  Serial8250 dev(console.wr, nullptr);
  pinless::testing::LogCapture log("dev");
  std::string text = lots_of_lines();
  while (text.size() < Serial8250::kOutputLimit + 256 * 1024) text += text;
  send(dev, text);
  CHECK(dev.dropped_output() > 0);
  std::string got;
  for (size_t last = SIZE_MAX; got.size() != last;) {
    last = got.size();
    got += console.take();
    dev.flush();
  }
  // Nothing lost but the tail that did not fit, nothing reordered.
  CHECK(got.size() + dev.dropped_output() == text.size());
  CHECK(got == text.substr(0, got.size()));
  std::string warnings = log.text();
  CHECK(warnings.find("guest output dropped") != std::string::npos);
  CHECK(warnings.find("guest output dropped") == warnings.rfind("guest output dropped"));
  // The console reads again: new output flows.
  send(dev, "after\n");
  CHECK(console.take() == "after\n");
}

TEST_CASE("serial: output without a newline is written out when the device goes away") {
  Console console(false);
  {
    Serial8250 dev(console.wr, nullptr);
    send(dev, "login: ");
  }
  CHECK(console.take() == "login: ");
}
