// VirtioSlot: the virtio-pci BAR follows the guest's programming onto the MMIO bus and the
// notify addresses onto KVM ioeventfds (scripted KVM), and the event loop turns a signalled
// notify eventfd into a queue notification.
#include <doctest/doctest.h>

#include <set>

#include "fakes/fake_kvm.h"
#include "fakes/fake_sys.h"
#include "pinless/base/linux_kvm.h"
#include "pinless/vmm/kvm/kvm.h"
#include "pinless/vmm/virtio/virtio_slot.h"
#include "unit/virtio/fake_guest_ram.h"

using namespace pinless;
using namespace pinless::testing;
using namespace pinless::vmm;

namespace {

class QuietDevice final : public virtio::VirtioDevice {
 public:
  uint16_t device_id() const override { return 23; }
  uint32_t pci_class() const override { return 0x088000; }
  uint64_t features() const override { return virtio::kFeatureVersion1; }
  std::vector<uint16_t> queue_max_sizes() const override { return {8, 8}; }
  uint32_t config_size() const override { return 0; }
  void read_config(uint32_t, std::span<uint8_t>) override {}
  void write_config(uint32_t, std::span<const uint8_t>) override {}
  Status activate(uint64_t) override { return {}; }
  Result<bool> process(uint16_t, virtio::SplitQueue&) override { return false; }
  void reset() override {}
  std::string name() const override { return "quiet"; }
};

struct Dummy final : pci::IoDevice {
  void read(uint64_t, std::span<uint8_t>) override {}
  void write(uint64_t, std::span<const uint8_t>) override {}
};

struct Rig {
  FakeSys sys;
  std::set<std::pair<uint64_t, int>> ioeventfds;  // (address, fd) assigned now
  int ioeventfd_calls = 0;
  FakeGuestRam ram{Gpa(0x100000), 0x10000};
  std::optional<Kvm> kvm;
  std::optional<Vm> vm;
  IoBus bus;
  std::shared_ptr<virtio::VirtioPciDevice> dev;
  std::unique_ptr<VirtioSlot> slot;

  explicit Rig(VirtioSlot::Notify notify = VirtioSlot::Notify::kIoeventfd) {
    script_kvm_vm(sys);
    sys.on_ioctl(KVM_IOEVENTFD, [this](int, unsigned long, void* a) {
      auto* e = static_cast<kvm_ioeventfd*>(a);
      ioeventfd_calls++;
      if (e->len != VirtioSlot::kNotifyWidth || e->flags & ~uint32_t(KVM_IOEVENTFD_FLAG_DEASSIGN)) return -EINVAL;
      auto key = std::make_pair(uint64_t(e->addr), int(e->fd));
      if (e->flags & KVM_IOEVENTFD_FLAG_DEASSIGN) return ioeventfds.erase(key) ? 0 : -ENOENT;
      return ioeventfds.insert(key).second ? 0 : -EEXIST;
    });
    kvm.emplace(Kvm::open(sys).value());
    vm.emplace(Vm::create(*kvm).value());
    dev = virtio::VirtioPciDevice::create(sys, std::make_unique<QuietDevice>(), ram, nullptr).value();
    slot = VirtioSlot::create(sys, *vm, bus, dev, notify).value();
  }
  void bar(uint64_t at) {
    dev->config_write(0x10, 4, uint32_t(at));
    dev->config_write(0x14, 4, uint32_t(at >> 32));
  }
  void decode(bool on) { dev->config_write(0x04, 2, on ? pci::kCommandMemory : 0); }
  std::set<uint64_t> notify_addrs() const {
    std::set<uint64_t> s;
    for (auto& [a, fd] : ioeventfds) s.insert(a);
    return s;
  }
};

constexpr uint64_t kAt = 0xe0000000, kMoved = 0x1000000000;

}  // namespace

TEST_CASE("virtio slot: the BAR and its notify ioeventfds follow decode and moves") {
  Rig r;
  r.bar(kAt);
  CHECK_FALSE(r.slot->placed_at().has_value());
  CHECK(r.bus.owner(IoBus::Space::kMmio, kAt).empty());
  CHECK(r.ioeventfds.empty());

  r.decode(true);
  CHECK(r.slot->placed_at() == kAt);
  CHECK(r.bus.owner(IoBus::Space::kMmio, kAt) == "quiet");
  CHECK(r.bus.owner(IoBus::Space::kMmio, kAt + virtio::VirtioPciDevice::kBarSize - 1) == "quiet");
  CHECK(r.notify_addrs() == std::set<uint64_t>{kAt + 0x3000, kAt + 0x3004});
  // Register accesses reach the device through the bus.
  uint8_t ack = virtio::kStatusAcknowledge;
  CHECK(r.bus.mmio_write(Gpa(kAt + 0x14), std::span<const uint8_t>(&ack, 1)));
  CHECK(r.dev->status() == virtio::kStatusAcknowledge);

  r.bar(kMoved);  // low half first (address 0 in between: not decoded), then the high half
  CHECK(r.slot->placed_at() == kMoved);
  CHECK(r.bus.owner(IoBus::Space::kMmio, kAt).empty());
  CHECK(r.notify_addrs() == std::set<uint64_t>{kMoved + 0x3000, kMoved + 0x3004});

  r.decode(false);
  CHECK_FALSE(r.slot->placed_at().has_value());
  CHECK(r.bus.owner(IoBus::Space::kMmio, kMoved).empty());
  CHECK(r.ioeventfds.empty());

  r.decode(true);
  CHECK(r.ioeventfds.size() == 2);
  r.slot.reset();  // teardown removes everything it placed
  CHECK(r.ioeventfds.empty());
  CHECK(r.bus.owner(IoBus::Space::kMmio, kMoved).empty());
}

TEST_CASE("virtio slot: a BAR over another device's range is not claimed and takes nothing from it") {
  Rig r;
  Dummy other;
  REQUIRE(r.bus.register_mmio(Gpa(kAt + 0x2000), 0x1000, &other, "other").has_value());
  r.bar(kAt);
  r.decode(true);
  CHECK_FALSE(r.slot->placed_at().has_value());
  CHECK(r.ioeventfds.empty());
  CHECK(r.bus.owner(IoBus::Space::kMmio, kAt + 0x2000) == "other");
  r.bar(kMoved);  // moved away: claimed there, the other device untouched
  CHECK(r.slot->placed_at() == kMoved);
  CHECK(r.bus.owner(IoBus::Space::kMmio, kAt + 0x2000) == "other");
}

TEST_CASE("virtio slot: a signalled notify eventfd is read and passed to the device on the loop") {
  Rig r;
  r.bar(kAt);
  r.decode(true);
  EventLoop loop;
  REQUIRE(r.slot->start(loop).has_value());
  int fd = r.ioeventfds.begin()->second;  // queue 0's (lowest address)
  uint64_t one = 1;
  REQUIRE(::write(fd, &one, sizeof one) == sizeof one);
  REQUIRE(::write(fd, &one, sizeof one) == sizeof one);
  loop.poll();
  CHECK(r.slot->ioeventfd_notifies() == 2);  // two signals, one read: the counter adds up
  uint64_t left = 0;
  CHECK(::read(fd, &left, sizeof left) < 0);  // drained
}

TEST_CASE("virtio slot: with notify by exit, no ioeventfd: the notify writes reach the device through the bus") {
  Rig r(VirtioSlot::Notify::kExit);
  r.bar(kAt);
  r.decode(true);
  CHECK(r.slot->placed_at() == kAt);
  CHECK(r.ioeventfd_calls == 0);
  CHECK(r.bus.owner(IoBus::Space::kMmio, kAt + virtio::VirtioPciDevice::notify_offset(1)) == "quiet");
  uint16_t queue = 1;
  CHECK(r.bus.mmio_write(Gpa(kAt + virtio::VirtioPciDevice::notify_offset(1)),
                         std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&queue), 2)));
  EventLoop loop;
  REQUIRE(r.slot->start(loop).has_value());  // nothing to serve on the loop
  r.bar(kMoved);
  r.slot.reset();
  CHECK(r.ioeventfd_calls == 0);
  CHECK(r.bus.owner(IoBus::Space::kMmio, kMoved).empty());
}
