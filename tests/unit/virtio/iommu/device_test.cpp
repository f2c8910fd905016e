// ViommuDevice behind the virtio-pci transport, driven as the Linux driver does: features
// negotiated through the common config, requests queued without a kick and drained on one
// notification, requests and replies split across descriptors, the config read through the
// BAR. The model's own semantics are tested in the other viommu tests; this is the plumbing.
#include <doctest/doctest.h>

#include "fakes/fake_sys.h"
#include "pinless/virtio/iommu/device.h"
#include "pinless/virtio/virtio_pci.h"
#include "unit/virtio/fake_guest_ram.h"
#include "unit/virtio/iommu/viommu_rig.h"

using namespace pinless;
using namespace pinless::virtio;
using namespace pinless::virtio::testing;
using pinless::testing::FakeGuestRam;
using pinless::testing::FakeSys;
using pinless::testing::TestDriver;

namespace {

constexpr Gpa kBase{0x100000};

struct Bench {
  FakeSys sys;
  FakeViommuHost host;
  FakeGuestRam ram{kBase, 0x40000};
  ViommuDevice* dev = nullptr;
  std::unique_ptr<VirtioPciDevice> pci;
  QueueLayout layout{32, kBase + 0x1000, kBase + 0x2000, kBase + 0x3000};
  TestDriver drv{ram, layout};
  uint16_t next_desc = 0;
  uint64_t next_buf = kBase.value() + 0x8000;

  Bench() {
    auto model = ViommuModel::create(host, test_config()).value();
    auto d = std::make_unique<ViommuDevice>(std::move(model));
    dev = d.get();
    pci = VirtioPciDevice::create(sys, std::move(d), ram, nullptr).value();
  }
  void wr(uint64_t off, size_t n, uint64_t v) { pci->write(off, std::span<const uint8_t>(reinterpret_cast<uint8_t*>(&v), n)); }
  uint64_t rd(uint64_t off, size_t n) {
    uint64_t v = 0;
    pci->read(off, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&v), n));
    return v;
  }
  void bring_up() {
    wr(0x14, 1, kStatusAcknowledge | kStatusDriver);
    wr(0x08, 4, 0);
    wr(0x0c, 4, uint32_t(kAllFeatures));
    wr(0x08, 4, 1);
    wr(0x0c, 4, uint32_t(kAllFeatures >> 32));
    wr(0x14, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    wr(0x16, 2, 0);
    wr(0x18, 2, layout.size);
    wr(0x20, 4, layout.desc.value());
    wr(0x28, 4, layout.driver.value());
    wr(0x30, 4, layout.device.value());
    wr(0x1c, 2, 1);
    wr(0x14, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  }
  // Queues one request: `req` split into `pieces` readable buffers, `reply` writable bytes in
  // two buffers. Returns the GPA of the writable bytes (contiguous in this bench).
  uint64_t queue(const std::vector<uint8_t>& req, size_t pieces, uint32_t reply) {
    uint16_t head = next_desc;
    size_t at = 0;
    for (size_t p = 0; p < pieces; ++p) {
      size_t n = p + 1 == pieces ? req.size() - at : req.size() / pieces;
      std::memcpy(ram.at(Gpa(next_buf)), req.data() + at, n);
      drv.desc(next_desc, next_buf, uint32_t(n), kDescFlagNext, uint16_t(next_desc + 1));
      next_desc++, next_buf += 0x100, at += n;
    }
    uint64_t out = next_buf;
    uint32_t first = reply / 2;
    drv.desc(next_desc, out, first, kDescFlagWrite | kDescFlagNext, uint16_t(next_desc + 1));
    next_desc++;
    drv.desc(next_desc, out + first, reply - first, kDescFlagWrite);
    next_desc++;
    next_buf += 0x1000;
    drv.offer(head);
    return out;
  }
};

}  // namespace

TEST_CASE("viommu device: identity and config through the virtio-pci BAR") {
  Bench b;
  CHECK(b.pci->config_read(0x02, 2) == 0x1040 + 23);
  CHECK(b.pci->config_read(0x0a, 2) == 0x0806);
  CHECK(b.rd(VirtioPciDevice::kDeviceOffset + w::config::kPageSizeMask, 4) == 0x40201000);
  CHECK(b.rd(VirtioPciDevice::kDeviceOffset + w::config::kInputEnd, 4) == 0xffffffff);
  CHECK(b.rd(VirtioPciDevice::kDeviceOffset + w::config::kProbeSize, 4) == 512);
  CHECK(b.rd(0x12, 2) == 2);  // requestq and eventq
  b.wr(0x16, 2, 0);
  CHECK(b.rd(0x18, 2) == ViommuDevice::kRequestQueueSize);
}

TEST_CASE("viommu device: requests queued without a kick are all served on one notification") {
  Bench b;
  b.bring_up();
  CHECK(b.dev->model().features() == kAllFeatures);
  uint64_t t1 = b.queue(attach_req(1, 0x8), 1, 4);
  uint64_t t2 = b.queue(map_req(1, 0x1000000, 0x1000fff, 0x20000), 3, 4);  // split over 3 buffers
  uint64_t t3 = b.queue(probe_req(0x8), 2, 512 + 4);
  std::vector<uint8_t> bogus(8, 0);
  bogus[0] = 99;  // unknown type
  b.queue(bogus, 1, 4);
  b.pci->notify(0);
  CHECK(b.drv.used_idx() == 4);
  CHECK(b.drv.used(0).second == 4);
  CHECK(b.drv.used(1).second == 4);
  CHECK(b.drv.used(2).second == 516);
  CHECK(b.drv.used(3).second == 0);  // unknown type: unwritten, used length 0
  CHECK(b.ram.get<uint8_t>(Gpa(t1)) == OK);
  CHECK(b.ram.get<uint8_t>(Gpa(t2)) == OK);
  CHECK(b.ram.get<uint8_t>(Gpa(t3 + 512)) == OK);  // the tail after probe_size bytes
  CHECK(w::le16(std::span<const uint8_t>(b.ram.at(Gpa(t3)), 4), 0) == w::probe::kPropResvMem);
  CHECK(b.ram.get<uint8_t>(Gpa(t3 + 4)) == w::probe::kResvMsi);
  CHECK(b.ram.get<uint64_t>(Gpa(t3 + 8)) == 0xfee00000);
  CHECK(b.ram.get<uint64_t>(Gpa(t3 + 16)) == 0xfeefffff);
  CHECK(b.host.calls == std::vector<std::string>{"attach 0x8 1", "map 1 0x1000000+0x1000 0x20000 rw"});
  CHECK(b.dev->requests() == 4);
}

TEST_CASE("viommu device: an oversized reply part, a broken chain, and reset") {
  Bench b;
  b.bring_up();
  b.drv.desc(0, kBase.value() + 0x8000, 24, kDescFlagNext, 1);
  b.drv.desc(1, kBase.value() + 0x9000, uint32_t(ViommuDevice::kMaxReply + 4), kDescFlagWrite);
  b.drv.offer(0);
  b.pci->notify(0);
  CHECK(b.drv.used(0).second == 0);
  CHECK(b.dev->refused_chains() == 1);
  CHECK(b.host.calls.empty());

  b.drv.desc(2, kBase.value() + 0x8000, 24, kDescFlagNext, 2);  // a loop
  b.drv.offer(2);
  b.pci->notify(0);
  CHECK((b.pci->status() & kStatusNeedsReset) != 0);
  b.queue(attach_req(1, 0x8), 1, 4);
  b.pci->notify(0);
  CHECK(b.host.calls.empty());  // nothing served until the driver resets

  b.wr(0x14, 1, 0);
  CHECK(b.dev->model().features() == 0);
}
