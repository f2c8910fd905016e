#include <doctest/doctest.h>
#include <sys/mman.h>

#include <string>
#include <vector>

#include "../../../../vmm/src/dma/guest_dma.h"  // private to vmm/src
#include "pinless/iommu/iommufd.h"
#include "pinless/iommu/iommufd_backend.h"
#include "unit/iommu/fake_iommu.h"

using namespace pinless;
using namespace pinless::vmm;
using pinless::testing::FakeIommufd;
using pinless::testing::FakeSys;

namespace {
constexpr uint64_t kRam = 16 * kMiB;

// Real anonymous memory: pinning populates it.
struct Ram {
  void* p = ::mmap(nullptr, kRam, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ~Ram() { ::munmap(p, kRam); }
  Hva hva() const { return hva_of(p); }
};

// RAM 0..16M at GPA 16M (inside the default fake ranges): 0..8M pin, 8M..16M fault.
std::vector<DmaPiece> pieces(const Ram& ram) {
  DmaPiece pin{{Gpa(16 * kMiB), 8 * kMiB}, ram.hva(), 0, false};
  DmaPiece fault{{Gpa(24 * kMiB), 8 * kMiB}, ram.hva() + 8 * kMiB, 8 * kMiB, true, {16, iommu::WindowPolicy::kForward}};
  return {pin, fault};
}

struct Dev {
  std::vector<uint32_t> attached;
  int detached = 0;
  DmaDeviceRef ref(bool can_fault = true) {
    DmaDeviceRef r;
    r.name = "dev0";
    r.dev_id = 77;
    r.can_fault = can_fault;
    r.why_not = can_fault ? "" : "no PCIe Page Request Interface (PRI) capability";
    r.attach = [this](uint32_t pt) -> Status {
      attached.push_back(pt);
      return {};
    };
    r.detach = [this] { detached++; };
    return r;
  }
};

struct Env {
  FakeSys sys;
  FakeIommufd k{sys};
  std::unique_ptr<iommu::Iommufd> ctx = iommu::Iommufd::open(sys).value();
  std::unique_ptr<iommu::IommufdBackend> ioas = iommu::IommufdBackend::create(*ctx).value();
  Timeline timeline;
};
}  // namespace

TEST_CASE("guest dma: pin pieces are mapped, fault pieces get a fault HWPT and map nothing") {
  Env e;
  Ram ram;
  Dev dev;
  DmaConfig cfg;
  {
    auto dma = GuestDma::create(e.sys, *e.ioas, e.ioas.get(), {dev.ref()}, pieces(ram), cfg, e.timeline).value();
    CHECK(e.k.last_hwpt.flags == IOMMU_HWPT_FAULT_ID_VALID);
    CHECK(e.k.last_hwpt.dev_id == 77);
    CHECK(e.k.last_hwpt.pt_id == e.ioas->ioas_id());
    REQUIRE(dev.attached.size() == 1);
    CHECK(e.k.objects[dev.attached[0]] == "hwpt");
    CHECK(dma->fault_fd() >= 0);
    REQUIRE(e.k.maps[e.ioas->ioas_id()].size() == 1);  // only the pin piece
    CHECK(e.k.maps[e.ioas->ioas_id()].begin()->first == 16 * kMiB);
    CHECK(dma->pinned_bytes() == 8 * kMiB);
    auto s = dma->summary();
    CHECK(s["backend"] == "iommufd");
    CHECK(s["fallback"].is_null());
    REQUIRE(s["regions"].size() == 2);
    CHECK(s["regions"][0]["dma"] == "pin");
    CHECK(s["regions"][0]["pinned_bytes"] == 8 * kMiB);
    CHECK(s["regions"][1]["dma"] == "fault");
    CHECK(s["regions"][1]["premap"] == 16);
    CHECK(s["regions"][1]["window"] == "forward");
    CHECK(s["regions"][1]["pinned_bytes"] == 0);
    REQUIRE(s["devices"].size() == 1);
    CHECK(s["devices"][0]["name"] == "dev0");
    CHECK(s["devices"][0]["dev_id"] == 77);
    CHECK(s["devices"][0]["faults"] == 0);
    dma->release_devices();
    dma->release_devices();  // idempotent
    CHECK(dev.detached == 1);
  }
  // Teardown: HWPT and fault queue destroyed, pins unmapped; only the IOAS is left.
  CHECK(e.k.live_objects() == 1);
  CHECK(e.k.live_maps() == 0);
}

TEST_CASE("guest dma: a device without page requests fails by default and leaves nothing") {
  Env e;
  Ram ram;
  Dev dev;
  DmaConfig cfg;
  auto r = GuestDma::create(e.sys, *e.ioas, e.ioas.get(), {dev.ref(false)}, pieces(ram), cfg, e.timeline);
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("dev0: no PCIe Page Request Interface") != std::string::npos);
  CHECK(r.error().message().find("--dma-fallback=pin") != std::string::npos);
  CHECK(dev.attached.empty());
  CHECK(e.k.live_objects() == 1);
  CHECK(e.k.live_maps() == 0);
}

TEST_CASE("guest dma: --dma-fallback=pin pins the fault regions and says why") {
  Env e;
  Ram ram;
  Dev dev;
  DmaConfig cfg;
  cfg.fallback_pin = true;
  auto dma = GuestDma::create(e.sys, *e.ioas, e.ioas.get(), {dev.ref(false)}, pieces(ram), cfg, e.timeline).value();
  CHECK(dma->fault_fd() == -1);
  CHECK(e.k.maps[e.ioas->ioas_id()].size() == 2);
  CHECK(dma->pinned_bytes() == 16 * kMiB);
  auto s = dma->summary();
  CHECK(s["fallback"] == "no-pri");
  CHECK(s["regions"][1]["dma"] == "pin");
  CHECK(s["regions"][1]["pinned_bytes"] == 8 * kMiB);
}

TEST_CASE("guest dma: kernel refusals of the fault HWPT and the attach are classified and undone") {
  Env e;
  Ram ram;
  DmaConfig cfg;
  SUBCASE("kernel < 6.13") {
    Dev dev;
    e.k.fail_next(IOMMU_HWPT_ALLOC, EOPNOTSUPP);
    auto r = GuestDma::create(e.sys, *e.ioas, e.ioas.get(), {dev.ref()}, pieces(ram), cfg, e.timeline);
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("6.13") != std::string::npos);
    CHECK(dev.detached == 1);  // moved back, whatever got done
  }
  SUBCASE("attach refused: no PRI on this IOMMU") {
    Dev dev;
    auto ref = dev.ref();
    ref.attach = [](uint32_t) -> Status { return fail("VFIO_DEVICE_ATTACH_IOMMUFD_PT", ENODEV); };
    auto r = GuestDma::create(e.sys, *e.ioas, e.ioas.get(), {ref}, pieces(ram), cfg, e.timeline);
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("cannot raise I/O page faults") != std::string::npos);
  }
  CHECK(e.k.live_objects() == 1);
  CHECK(e.k.live_maps() == 0);
}

TEST_CASE("guest dma: type1 has no fault delivery; the pin limit refuses static pins up front") {
  Env e;
  Ram ram;
  Dev dev;
  DmaConfig cfg;
  auto r = GuestDma::create(e.sys, *e.ioas, nullptr, {dev.ref()}, pieces(ram), cfg, e.timeline);
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("iommufd") != std::string::npos);

  DmaConfig capped;
  capped.pin_limit = 4 * kMiB;
  auto pinned = pieces(ram);
  pinned[1].fault = false;
  auto c = GuestDma::create(e.sys, *e.ioas, e.ioas.get(), {dev.ref()}, pinned, capped, e.timeline);
  REQUIRE_FALSE(c);
  CHECK(c.error().message().find("pin limit") != std::string::npos);
  CHECK(e.k.live_maps() == 0);
}
