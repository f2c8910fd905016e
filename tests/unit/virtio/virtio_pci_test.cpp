// VirtioPciDevice with a scripted device behind it and a driver played by the test: the PCI
// identity and capabilities Linux's virtio-pci looks for, feature negotiation, queue setup,
// notification and MSI-X delivery (real eventfds), DEVICE_NEEDS_RESET for a broken driver,
// and guest accesses of every shape that must be ignored.
#include <doctest/doctest.h>

#include <map>
#include <random>

#include "fakes/fake_sys.h"
#include "pinless/pci/capabilities.h"
#include "pinless/virtio/virtio_pci.h"
#include "unit/virtio/fake_guest_ram.h"

using namespace pinless;
using namespace pinless::testing;
using namespace pinless::virtio;

namespace {

constexpr Gpa kBase{0x100000};
constexpr uint64_t kRam = 0x40000;

// Echoes each request reversed into its writable part; counts what the transport asks of it.
class EchoDevice final : public VirtioDevice {
 public:
  struct Seen {
    int activations = 0, resets = 0, processed = 0;
    uint64_t features = 0;
    uint8_t config[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  };
  explicit EchoDevice(Seen& seen) : seen_(seen) {}
  uint16_t device_id() const override { return 42; }
  uint32_t pci_class() const override { return 0xff0000; }
  uint64_t features() const override { return kFeatureVersion1 | kFeatureAccessPlatform | 0x5; }
  std::vector<uint16_t> queue_max_sizes() const override { return {8, 4}; }
  uint32_t config_size() const override { return 8; }
  void read_config(uint32_t offset, std::span<uint8_t> data) override {
    std::memcpy(data.data(), seen_.config + offset, data.size());
  }
  void write_config(uint32_t offset, std::span<const uint8_t> data) override {
    std::memcpy(seen_.config + offset, data.data(), data.size());
  }
  Status activate(uint64_t features) override {
    seen_.activations++;
    seen_.features = features;
    return {};
  }
  Result<bool> process(uint16_t, SplitQueue& q) override {
    bool any = false;
    while (true) {
      auto c = PINLESS_TRY(q.pop());
      if (!c) return any;
      std::vector<uint8_t> in(c->readable_bytes());
      c->gather(in);
      std::reverse(in.begin(), in.end());
      q.push(c->head, uint32_t(c->scatter(in)));
      seen_.processed++;
      any = true;
    }
  }
  void reset() override { seen_.resets++; }
  std::string name() const override { return "echo"; }

 private:
  Seen& seen_;
};

struct FakeRoutes final : pci::MsiRoutes {
  uint32_t next = 40;
  std::map<uint32_t, int> irqfd;
  std::map<uint32_t, std::pair<pci::MsiMessage, bool>> route;
  std::vector<uint32_t> released;
  Result<uint32_t> allocate_gsi() override { return next++; }
  Status release_gsi(uint32_t gsi) override {
    released.push_back(gsi);
    return {};
  }
  Status update(uint32_t gsi, const pci::MsiMessage& msg, bool masked) override {
    route[gsi] = {msg, masked};
    return {};
  }
  Status attach_irqfd(uint32_t gsi, int fd) override {
    irqfd[gsi] = fd;
    return {};
  }
};

struct Rig {
  FakeSys sys;
  FakeGuestRam ram{kBase, kRam};
  FakeRoutes routes;
  EchoDevice::Seen seen;
  std::unique_ptr<VirtioPciDevice> dev =
      VirtioPciDevice::create(sys, std::make_unique<EchoDevice>(seen), ram, &routes).value();
  QueueLayout layout{8, kBase + 0x1000, kBase + 0x2000, kBase + 0x3000};
  TestDriver drv{ram, layout};

  uint32_t rd(uint64_t off, size_t n) {
    uint8_t b[8] = {};
    dev->read(off, std::span<uint8_t>(b, n));
    uint32_t v = 0;
    std::memcpy(&v, b, std::min<size_t>(n, 4));
    return v;
  }
  void wr(uint64_t off, size_t n, uint64_t v) { dev->write(off, std::span<const uint8_t>(reinterpret_cast<uint8_t*>(&v), n)); }
  void status(uint8_t s) { wr(0x14, 1, s); }
  // The Linux driver's order: ACK, DRIVER, features, FEATURES_OK, queues, DRIVER_OK.
  void negotiate(uint64_t features = kFeatureVersion1 | 0x1) {
    status(kStatusAcknowledge);
    status(kStatusAcknowledge | kStatusDriver);
    wr(0x08, 4, 0);
    wr(0x0c, 4, uint32_t(features));
    wr(0x08, 4, 1);
    wr(0x0c, 4, uint32_t(features >> 32));
    status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  }
  void setup_queue0(QueueLayout l) {
    wr(0x16, 2, 0);
    wr(0x18, 2, l.size);
    wr(0x20, 4, uint32_t(l.desc.value()));
    wr(0x24, 4, uint32_t(l.desc.value() >> 32));
    wr(0x28, 4, uint32_t(l.driver.value()));
    wr(0x2c, 4, 0);
    wr(0x30, 4, uint32_t(l.device.value()));
    wr(0x34, 4, 0);
    wr(0x1c, 2, 1);
  }
  void driver_ok() { status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk); }
  // Enables MSI-X in config space and unmasks table entry `v` with a message.
  void msix_on(uint16_t v, bool unmask = true) {
    auto cap = pci::find_capability([&](uint16_t o) { return dev->config_read(o, 4); }, pci::kCapMsix).value();
    dev->config_write(uint16_t(cap + 2), 2, pci::MsixTable::kControlEnable);
    uint64_t e = VirtioPciDevice::kMsixTableOffset + 16ull * v;
    wr(e, 4, 0xfee00000);
    wr(e + 4, 4, 0);
    wr(e + 8, 4, 0x40 + v);
    wr(e + 12, 4, unmask ? 0 : 1);
  }
  uint64_t eventfd_count(uint16_t v) {
    int fd = routes.irqfd.at(40 + v);
    uint64_t n = 0;
    return ::read(fd, &n, sizeof n) == sizeof n ? n : 0;  // non-blocking: 0 when not signalled
  }
};

}  // namespace

TEST_CASE("virtio-pci: identity, one 64-bit BAR, and the capabilities Linux looks for") {
  Rig r;
  CHECK(r.dev->config_read(0x00, 2) == 0x1af4);
  CHECK(r.dev->config_read(0x02, 2) == 0x1040 + 42);
  CHECK(r.dev->config_read(0x08, 1) == 1);  // revision >= 1: modern only
  CHECK(r.dev->config_read(0x2c, 2) == 0x1af4);
  CHECK(r.dev->config_read(0x2e, 2) >= 0x40);
  auto bars = r.dev->bars();
  REQUIRE(bars.size() == 1);
  CHECK(bars[0].kind == pci::BarKind::kMem64);
  CHECK(bars[0].size == VirtioPciDevice::kBarSize);

  auto read32 = [&](uint16_t o) { return r.dev->config_read(o, 4); };
  std::map<uint8_t, std::pair<uint32_t, uint32_t>> by_type;  // cfg_type -> (offset, length)
  int msix = 0;
  for (auto cap : pci::walk_capabilities(read32)) {
    if (cap.id == pci::kCapMsix) {
      msix++;
      CHECK((r.dev->config_read(uint16_t(cap.offset + 2), 2) & 0x7ff) + 1 == 3);  // config + 2 queues
      continue;
    }
    REQUIRE(cap.id == pci::kCapVendor);
    uint8_t type = uint8_t(r.dev->config_read(uint16_t(cap.offset + 3), 1));
    CHECK(r.dev->config_read(uint16_t(cap.offset + 4), 1) == 0);  // BAR 0
    by_type[type] = {r.dev->config_read(uint16_t(cap.offset + 8), 4), r.dev->config_read(uint16_t(cap.offset + 12), 4)};
    if (type == 2) CHECK(r.dev->config_read(uint16_t(cap.offset + 16), 4) == 4);  // notify multiplier
    CHECK(r.dev->config_read(uint16_t(cap.offset + 2), 1) == (type == 2 || type == 5 ? 20 : 16));
  }
  CHECK(msix == 1);
  CHECK(by_type.size() == 5);
  CHECK(by_type[1] == std::pair<uint32_t, uint32_t>{0x0000, 0x38});
  CHECK(by_type[2] == std::pair<uint32_t, uint32_t>{0x3000, 8});
  CHECK(by_type[3] == std::pair<uint32_t, uint32_t>{0x1000, 1});
  CHECK(by_type[4] == std::pair<uint32_t, uint32_t>{0x2000, 8});
  CHECK(by_type.count(5) == 1);
  CHECK(r.routes.irqfd.size() == 3);  // one eventfd per vector, each on its own GSI
}

TEST_CASE("virtio-pci: feature negotiation: a subset with VERSION_1 or FEATURES_OK does not stick") {
  Rig r;
  r.wr(0x00, 4, 0);
  CHECK(r.rd(0x04, 4) == 0x5);
  r.wr(0x00, 4, 1);
  CHECK(r.rd(0x04, 4) == 1);  // VERSION_1; ACCESS_PLATFORM is never offered
  r.wr(0x00, 4, 7);
  CHECK(r.rd(0x04, 4) == 0);

  SUBCASE("accepted") {
    r.negotiate(kFeatureVersion1 | 0x4);
    CHECK(r.rd(0x14, 1) == (kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk));
    r.wr(0x08, 4, 0);
    r.wr(0x0c, 4, 0x5);  // after FEATURES_OK: ignored
    CHECK(r.dev->driver_features() == (kFeatureVersion1 | 0x4));
    r.driver_ok();
    CHECK(r.seen.activations == 1);
    CHECK(r.seen.features == (kFeatureVersion1 | 0x4));
  }
  SUBCASE("without VERSION_1") {
    r.negotiate(0x1);
    CHECK((r.rd(0x14, 1) & kStatusFeaturesOk) == 0);
    r.driver_ok();
    CHECK(r.seen.activations == 0);
  }
  SUBCASE("a feature that was not offered") {
    r.negotiate(kFeatureVersion1 | 0x2);
    CHECK((r.rd(0x14, 1) & kStatusFeaturesOk) == 0);
  }
  SUBCASE("ACCESS_PLATFORM, which the device has but does not offer") {
    r.negotiate(kFeatureVersion1 | kFeatureAccessPlatform);
    CHECK((r.rd(0x14, 1) & kStatusFeaturesOk) == 0);
  }
}

TEST_CASE("virtio-pci: a request through queue 0: notify, used ring, MSI-X eventfd") {
  Rig r;
  r.negotiate();
  r.setup_queue0(r.layout);
  CHECK(r.rd(0x1c, 2) == 1);
  r.wr(0x1a, 2, 1);  // queue 0 -> vector 1
  CHECK(r.rd(0x1a, 2) == 1);
  r.driver_ok();
  r.msix_on(1);

  std::memcpy(r.ram.at(kBase + 0x8000), "abc", 3);
  r.drv.desc(0, kBase.value() + 0x8000, 3, kDescFlagNext, 1);
  r.drv.desc(1, kBase.value() + 0x9000, 3, kDescFlagWrite);
  r.drv.offer(0);
  r.wr(VirtioPciDevice::notify_offset(0), 2, 0);
  CHECK(r.seen.processed == 1);
  CHECK(r.drv.used_idx() == 1);
  CHECK(r.drv.used(0) == std::pair<uint32_t, uint32_t>{0, 3});
  CHECK(std::memcmp(r.ram.at(kBase + 0x9000), "cba", 3) == 0);
  CHECK(r.eventfd_count(1) == 1);
  CHECK(r.dev->interrupts() == 1);
  CHECK(r.routes.route.at(41).first.address == 0xfee00000);
  CHECK_FALSE(r.routes.route.at(41).second);

  SUBCASE("the driver asked for no interrupt") {
    r.ram.put<uint16_t>(r.layout.driver, kAvailFlagNoInterrupt);
    r.drv.offer(0);
    r.dev->notify(0);  // the ioeventfd path
    CHECK(r.seen.processed == 2);
    CHECK(r.eventfd_count(1) == 0);
  }
  SUBCASE("a masked vector holds the interrupt pending until unmasked") {
    r.wr(VirtioPciDevice::kMsixTableOffset + 16 + 12, 4, 1);  // mask vector 1
    r.drv.offer(0);
    r.dev->notify(0);
    CHECK(r.eventfd_count(1) == 0);
    CHECK((r.rd(VirtioPciDevice::kMsixPbaOffset, 4) & 2) == 2);
    r.wr(VirtioPciDevice::kMsixTableOffset + 16 + 12, 4, 0);  // unmask
    CHECK(r.eventfd_count(1) == 1);
    CHECK((r.rd(VirtioPciDevice::kMsixPbaOffset, 4) & 2) == 0);
  }
  SUBCASE("no vector: the ISR bit, cleared by reading it") {
    r.wr(0x16, 2, 0);
    r.wr(0x1a, 2, 0xffff);
    r.drv.offer(0);
    r.dev->notify(0);
    CHECK(r.rd(VirtioPciDevice::kIsrOffset, 1) == 1);
    CHECK(r.rd(VirtioPciDevice::kIsrOffset, 1) == 0);
  }
}

TEST_CASE("virtio-pci: a driver that breaks its queue gets DEVICE_NEEDS_RESET, and reset recovers") {
  Rig r;
  r.negotiate();
  SUBCASE("rings outside RAM at enable") {
    QueueLayout bad = r.layout;
    bad.device = kBase + kRam;
    r.setup_queue0(bad);
    CHECK(r.rd(0x1c, 2) == 0);
    CHECK((r.rd(0x14, 1) & kStatusNeedsReset) != 0);
  }
  SUBCASE("a chain that loops, at notify") {
    r.setup_queue0(r.layout);
    r.driver_ok();
    r.drv.desc(0, kBase.value() + 0x8000, 4, kDescFlagNext, 0);
    r.drv.offer(0);
    r.dev->notify(0);
    CHECK((r.rd(0x14, 1) & kStatusNeedsReset) != 0);
    CHECK(r.drv.used_idx() == 0);
    // Stuck until reset: a good chain is not served either.
    r.drv.desc(0, kBase.value() + 0x8000, 4, 0);
    r.dev->notify(0);
    CHECK(r.drv.used_idx() == 0);
  }
  CHECK(r.rd(VirtioPciDevice::kIsrOffset, 1) == 2);  // config change (no config vector set)
  r.status(0);
  CHECK(r.seen.resets == 1);
  CHECK(r.rd(0x14, 1) == 0);
  CHECK(r.rd(0x1c, 2) == 0);
  CHECK(r.dev->driver_features() == 0);
  r.negotiate();
  r.setup_queue0(r.layout);
  r.driver_ok();
  r.drv.avail_idx = 0;
  r.ram.put<uint16_t>(r.layout.device + 2, 0);
  r.drv.desc(0, kBase.value() + 0x8000, 4, 0);
  r.drv.set_avail_idx(0);
  r.drv.offer(0);
  r.dev->notify(0);
  CHECK((r.rd(0x14, 1) & kStatusNeedsReset) == 0);
  CHECK(r.seen.processed == 1);
}

TEST_CASE("virtio-pci: accesses of the wrong width, place or queue are ignored") {
  Rig r;
  CHECK(r.rd(0x12, 2) == 2);
  CHECK(r.rd(0x12, 4) == 0);  // num_queues read as a dword
  CHECK(r.rd(0x13, 1) == 0);
  r.wr(0x14, 2, kStatusAcknowledge);  // status is one byte
  CHECK(r.rd(0x14, 1) == 0);
  r.wr(0x16, 2, 7);  // no queue 7
  CHECK(r.rd(0x18, 2) == 0);
  CHECK(r.rd(0x1a, 2) == 0xffff);
  r.wr(0x1c, 2, 1);  // enabling it does nothing
  r.wr(0x16, 2, 1);
  CHECK(r.rd(0x18, 2) == 4);
  r.wr(0x18, 2, 3);  // not a power of two
  CHECK(r.rd(0x18, 2) == 4);
  r.wr(0x18, 2, 8);  // larger than the maximum
  CHECK(r.rd(0x18, 2) == 4);
  r.wr(0x18, 2, 2);
  CHECK(r.rd(0x18, 2) == 2);
  r.wr(0x1a, 2, 3);  // vectors are 0..2
  CHECK(r.rd(0x1a, 2) == 0xffff);
  r.wr(0x10, 2, 9);
  CHECK(r.rd(0x10, 2) == 0xffff);
  // Device config: inside reads the device, across its end reads nothing.
  CHECK(r.rd(VirtioPciDevice::kDeviceOffset + 4, 4) == 0x08070605);
  CHECK(r.rd(VirtioPciDevice::kDeviceOffset + 6, 4) == 0);
  r.wr(VirtioPciDevice::kDeviceOffset + 6, 4, 0xffffffff);
  CHECK(r.seen.config[7] == 8);
  // Outside the BAR, and accesses wider than 8 bytes.
  CHECK(r.rd(VirtioPciDevice::kBarSize - 2, 4) == 0);
  uint8_t big[16];
  r.dev->read(0, big);
  r.dev->write(0, big);
  r.wr(VirtioPciDevice::notify_offset(5), 2, 5);  // no queue 5
  r.wr(VirtioPciDevice::notify_offset(0), 2, 0);  // not active: ignored
  CHECK(r.seen.processed == 0);
}

TEST_CASE("virtio-pci: the PCI_CFG window reaches the BAR through config space") {
  Rig r;
  uint16_t cap = 0;
  for (auto c : pci::walk_capabilities([&](uint16_t o) { return r.dev->config_read(o, 4); })) {
    if (c.id == pci::kCapVendor && r.dev->config_read(uint16_t(c.offset + 3), 1) == 5) cap = c.offset;
  }
  REQUIRE(cap != 0);
  r.dev->config_write(uint16_t(cap + 4), 1, 0);
  r.dev->config_write(uint16_t(cap + 8), 4, 0x12);  // num_queues
  r.dev->config_write(uint16_t(cap + 12), 4, 2);
  CHECK(r.dev->config_read(uint16_t(cap + 16), 4) == 2);
  r.dev->config_write(uint16_t(cap + 8), 4, 0x14);  // device status, one byte
  r.dev->config_write(uint16_t(cap + 12), 4, 1);
  r.dev->config_write(uint16_t(cap + 16), 4, kStatusAcknowledge);
  CHECK(r.rd(0x14, 1) == kStatusAcknowledge);
  r.dev->config_write(uint16_t(cap + 12), 4, 3);  // a bad length reads 0
  CHECK(r.dev->config_read(uint16_t(cap + 16), 4) == 0);
  r.dev->config_write(uint16_t(cap + 4), 1, 2);  // another BAR
  r.dev->config_write(uint16_t(cap + 12), 4, 1);
  CHECK(r.dev->config_read(uint16_t(cap + 16), 4) == 0);
}

TEST_CASE("virtio-pci: random guest accesses never crash or reach outside guest RAM") {
  Rig r;
  std::mt19937_64 rng(7);
  r.negotiate();
  r.setup_queue0(r.layout);
  r.driver_ok();
  for (int i = 0; i < 20000; ++i) {
    uint64_t v = rng();
    size_t n = size_t(1) << (rng() % 4);
    switch (rng() % 6) {
      case 0: r.wr(rng() % 0x40, n, v); break;                                   // common config
      case 1: r.wr(0x3000 + rng() % 16, n, v); break;                           // notify
      case 2: r.dev->config_write(uint16_t(rng() % 0x100), uint8_t(n > 4 ? 4 : n), uint32_t(v)); break;
      case 3: r.wr(0x4000 + rng() % 0x40, n, v); break;                         // MSI-X table
      case 4: r.drv.desc(uint16_t(rng() % 8), kBase.value() + rng() % (2 * kRam), uint32_t(rng() % 0x2000), uint16_t(rng() % 8), uint16_t(rng() % 10)); r.drv.offer(uint16_t(rng() % 9)); break;
      default: (void)r.rd(rng() % VirtioPciDevice::kBarSize, n); break;
    }
  }
  // Whatever state that left, a reset and a clean setup serve a request again.
  r.status(0);
  CHECK(r.rd(0x14, 1) == 0);
  QueueLayout fresh{8, kBase + 0x10000, kBase + 0x11000, kBase + 0x12000};
  TestDriver drv{r.ram, fresh};
  r.negotiate();
  r.setup_queue0(fresh);
  r.driver_ok();
  int before = r.seen.processed;
  drv.desc(0, kBase.value() + 0x8000, 4, kDescFlagNext, 1);
  drv.desc(1, kBase.value() + 0x9000, 4, kDescFlagWrite);
  drv.offer(0);
  r.dev->notify(0);
  CHECK(r.seen.processed == before + 1);
  CHECK(drv.used_idx() == 1);
}
