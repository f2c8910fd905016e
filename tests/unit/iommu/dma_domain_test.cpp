#include <doctest/doctest.h>
#include <sys/mman.h>

#include <string>
#include <vector>

#include "fake_iommu.h"
#include "pinless/iommu/dma_domain.h"
#include "pinless/iommu/iommufd.h"
#include "pinless/iommu/iommufd_backend.h"

using namespace pinless;
using namespace pinless::iommu;
using namespace pinless::testing;

namespace {
constexpr uint64_t kRam = 16 * kMiB;
constexpr uint64_t kFaultGpa = 24 * kMiB;

// Real anonymous memory: pinning populates it.
struct Ram {
  void* p = ::mmap(nullptr, kRam, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ~Ram() { ::munmap(p, kRam); }
  Hva hva() const { return hva_of(p); }
};

DmaRegion region(Gpa gpa, uint64_t size, Hva hva, uint64_t offset, bool fault) {
  DmaRegion r;
  r.iova = {Iova(gpa.value()), size};
  r.gpa = gpa;
  r.hva = hva;
  r.offset = offset;
  r.fault = fault;
  r.fault_policy = {16, WindowPolicy::kForward};
  return r;
}

// RAM 0..16M at IOVA = GPA 16M (inside the default fake ranges): 0..8M pin, 8M..16M fault.
DmaPolicy policy(const Ram& ram) {
  DmaPolicy p;
  p.regions = {region(Gpa(16 * kMiB), 8 * kMiB, ram.hva(), 0, false),
               region(Gpa(kFaultGpa), 8 * kMiB, ram.hva() + 8 * kMiB, 8 * kMiB, true)};
  return p;
}

struct Dev {
  std::vector<uint32_t> attached;
  int detached = 0;
  std::function<void()> on_detach;
  DmaDevice ref(bool can_fault = true) {
    DmaDevice r;
    r.name = "dev0";
    r.dev_id = 77;
    r.can_fault = can_fault;
    r.why_not = can_fault ? "" : "no PCIe Page Request Interface (PRI) capability";
    r.attach = [this](uint32_t pt) -> Status {
      attached.push_back(pt);
      return {};
    };
    r.detach = [this] {
      detached++;
      if (on_detach) on_detach();
    };
    return r;
  }
};

// The fake kernel with one IOAS, 16 MiB of RAM and one device.
struct Env {
  FakeSys sys;
  FakeIommufd k{sys};
  std::unique_ptr<Iommufd> ctx = Iommufd::open(sys).value();
  std::unique_ptr<IommufdBackend> ioas = IommufdBackend::create(*ctx).value();
  Ram ram;
  Dev dev;
  // Nothing of a domain left: no mapping, no object but the IOAS.
  bool clean() const { return k.live_objects() == 1 && k.live_maps() == 0; }
};

// A backend that cannot deliver I/O page faults, as VFIO type1: the iommufd one's mappings.
struct NoFaultBackend final : DmaBackend {
  explicit NoFaultBackend(DmaBackend& b) : inner(b) {}
  Status map(Iova iova, Hva hva, uint64_t size, Perm perm) override { return inner.map(iova, hva, size, perm); }
  Status unmap(Iova iova, uint64_t size) override { return inner.unmap(iova, size); }
  Result<std::vector<Range<Iova>>> iova_ranges() override { return inner.iova_ranges(); }
  uint64_t mapped_bytes() const override { return inner.mapped_bytes(); }
  BackendKind kind() const override { return BackendKind::kType1; }
  DmaBackend& inner;
};

std::string attr(const DmaPhase& p, const std::string& key) {
  for (const auto& [k, v] : p.attrs) {
    if (k == key) return v;
  }
  return "<none>";
}
}  // namespace

TEST_CASE("dma domain: pin regions are mapped, fault regions get a fault HWPT and map nothing") {
  Env e;
  {
    auto dma = DmaDomain::create(e.sys, *e.ioas, {e.dev.ref()}, policy(e.ram)).value();
    CHECK(e.k.last_hwpt.flags == IOMMU_HWPT_FAULT_ID_VALID);
    CHECK(e.k.last_hwpt.dev_id == 77);
    CHECK(e.k.last_hwpt.pt_id == e.ioas->ioas_id());
    REQUIRE(e.dev.attached.size() == 1);
    CHECK(e.k.objects[e.dev.attached[0]] == "hwpt");
    CHECK(dma->fault_fd() >= 0);
    REQUIRE(e.k.maps[e.ioas->ioas_id()].size() == 1);  // only the pin region
    CHECK(e.k.maps[e.ioas->ioas_id()].begin()->first == 16 * kMiB);
    CHECK(dma->pinned_bytes() == 8 * kMiB);
    auto s = dma->summary();
    CHECK(s["backend"] == "iommufd");
    CHECK(s["fallback"].is_null());
    CHECK(s["reclaim"] == false);
    REQUIRE(s["regions"].size() == 2);
    CHECK(s["regions"][0]["gpa"] == "0x1000000");
    CHECK(s["regions"][0]["dma"] == "pin");
    CHECK(s["regions"][0]["pinned_bytes"] == 8 * kMiB);
    CHECK(s["regions"][1]["dma"] == "fault");
    CHECK(s["regions"][1]["ram_offset"] == 8 * kMiB);
    CHECK(s["regions"][1]["premap"] == 16);
    CHECK(s["regions"][1]["window"] == "forward");
    CHECK(s["regions"][1]["pinned_bytes"] == 0);
    REQUIRE(s["devices"].size() == 1);
    CHECK(s["devices"][0]["name"] == "dev0");
    CHECK(s["devices"][0]["dev_id"] == 77);
    CHECK(s["devices"][0]["faults"] == 0);
    dma->release_devices();
    dma->release_devices();  // idempotent
    CHECK(e.dev.detached == 1);
  }
  // Teardown: HWPT and fault queue destroyed, pins unmapped; only the IOAS is left.
  CHECK(e.clean());
}

TEST_CASE("dma domain: a region is mapped at its IOVA, wherever its GPA is") {
  Env e;
  DmaPolicy p;
  p.regions = {region(Gpa(0x1000), 4 * kMiB, e.ram.hva(), 0, false)};
  p.regions[0].iova.start = Iova(64 * kMiB);
  auto dma = DmaDomain::create(e.sys, *e.ioas, {}, p).value();
  REQUIRE(e.k.maps[e.ioas->ioas_id()].size() == 1);
  CHECK(e.k.maps[e.ioas->ioas_id()].begin()->first == 64 * kMiB);
  CHECK(e.k.maps[e.ioas->ioas_id()].begin()->second.va == e.ram.hva().value());
  CHECK(dma->summary()["regions"][0]["gpa"] == "0x1000");
  CHECK(dma->fault_fd() == -1);
  CHECK(dma->on_fault_readable().value() == false);  // nothing to serve
}

TEST_CASE("dma domain: the phases carry the timeline's names and attrs, also when create fails") {
  Env e;
  std::vector<DmaPhase> phases;
  {
    auto dma = DmaDomain::create(e.sys, *e.ioas, {e.dev.ref()}, policy(e.ram), &phases).value();
    REQUIRE(phases.size() == 2);
    CHECK(phases[0].name == "dma_fault_setup");  // in the order they ended
    CHECK(attr(phases[0], "result") == "ok");
    CHECK(phases[1].name == "pin_region");
    CHECK(attr(phases[1], "gpa") == "0x1000000");
    CHECK(attr(phases[1], "bytes") == std::to_string(8 * kMiB));
    for (const char* key : {"ms", "populate_ms", "map_ms", "populate_threads"}) CHECK(attr(phases[1], key) != "<none>");
    CHECK(phases[1].start >= phases[0].end);
    CHECK(phases[1].end >= phases[1].start);
  }
  phases.clear();
  Dev nopri;
  REQUIRE_FALSE(DmaDomain::create(e.sys, *e.ioas, {nopri.ref(false)}, policy(e.ram), &phases));
  REQUIRE(phases.size() == 1);
  CHECK(attr(phases[0], "result") == "no-pri");
}

TEST_CASE("dma domain: a device without page requests fails by default and leaves nothing") {
  Env e;
  auto r = DmaDomain::create(e.sys, *e.ioas, {e.dev.ref(false)}, policy(e.ram));
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("dev0: no PCIe Page Request Interface") != std::string::npos);
  CHECK(r.error().message().find("--dma-fallback=pin") != std::string::npos);
  CHECK(e.dev.attached.empty());
  CHECK(e.clean());
}

TEST_CASE("dma domain: fallback_pin pins the fault regions and says why") {
  Env e;
  DmaPolicy p = policy(e.ram);
  p.fallback_pin = true;
  auto dma = DmaDomain::create(e.sys, *e.ioas, {e.dev.ref(false)}, p).value();
  CHECK(dma->fault_fd() == -1);
  CHECK(e.k.maps[e.ioas->ioas_id()].size() == 2);
  CHECK(dma->pinned_bytes() == 16 * kMiB);
  auto s = dma->summary();
  CHECK(s["fallback"] == "no-pri");
  CHECK(s["regions"][1]["dma"] == "pin");
  CHECK(s["regions"][1]["pinned_bytes"] == 8 * kMiB);
}

TEST_CASE("dma domain: kernel refusals of the fault HWPT and the attach are classified and undone") {
  Env e;
  SUBCASE("kernel < 6.13") {
    e.k.fail_next(IOMMU_HWPT_ALLOC, EOPNOTSUPP);
    auto r = DmaDomain::create(e.sys, *e.ioas, {e.dev.ref()}, policy(e.ram));
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("6.13") != std::string::npos);
    CHECK(e.dev.detached == 1);  // moved back, whatever got done
  }
  SUBCASE("attach refused: no PRI on this IOMMU") {
    auto ref = e.dev.ref();
    ref.attach = [](uint32_t) -> Status { return fail("VFIO_DEVICE_ATTACH_IOMMUFD_PT", ENODEV); };
    auto r = DmaDomain::create(e.sys, *e.ioas, {ref}, policy(e.ram));
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("cannot raise I/O page faults") != std::string::npos);
  }
  CHECK(e.clean());
}

TEST_CASE("dma domain: a backend without fault support (type1) refuses fault regions with the iommufd hint") {
  Env e;
  NoFaultBackend type1(*e.ioas);
  auto r = DmaDomain::create(e.sys, type1, {e.dev.ref()}, policy(e.ram));
  REQUIRE_FALSE(r);
  CHECK(r.error().message() ==
        "VFIO type1 backend: fault-driven DMA: Operation not supported (I/O page faults reach user space only "
        "through iommufd (/dev/iommu, kernel >= 6.13); use --iommu-backend=iommufd; --dma-fallback=pin maps and "
        "pins the region instead, --dma-fallback=fail stops)");
  CHECK(e.k.live_maps() == 0);
  CHECK(e.k.live_objects() == 1);  // no fault queue was even asked for

  DmaPolicy p = policy(e.ram);
  p.fallback_pin = true;
  auto dma = DmaDomain::create(e.sys, type1, {e.dev.ref()}, p).value();
  auto s = dma->summary();
  CHECK(s["backend"] == "type1");
  CHECK(s["fallback"] == "type1");
  CHECK(dma->pinned_bytes() == 16 * kMiB);
}

TEST_CASE("dma domain: the pin limit refuses static pins up front") {
  Env e;
  DmaPolicy capped = policy(e.ram);
  capped.pin_limit = 4 * kMiB;
  capped.regions[1].fault = false;
  auto c = DmaDomain::create(e.sys, *e.ioas, {e.dev.ref()}, capped);
  REQUIRE_FALSE(c);
  CHECK(c.error().message().find("pin limit") != std::string::npos);
  CHECK(e.k.live_maps() == 0);
}

TEST_CASE("dma domain: teardown unmaps fault windows, detaches, destroys HWPT then fault queue, unpins last") {
  // Before Env: the hooks below still run when Env destroys its IOAS (found by ASan).
  std::vector<std::string> order;
  Env e;
  FakeFaultFd ffd;
  ffd.install(e.sys);
  auto note = [&](const std::string& what) { order.push_back(what); };
  {
    auto dma = DmaDomain::create(e.sys, *e.ioas, {e.dev.ref()}, policy(e.ram)).value();
    ffd.groups.push_back({FakeFaultFd::record(1, kFaultGpa, true, 77)});
    CHECK(dma->on_fault_readable().value() == false);
    REQUIRE(e.k.maps[e.ioas->ioas_id()].size() == 2);  // pin + one fault window
    // Watch the kernel objects go from here on.
    e.sys.on_ioctl(IOMMU_IOAS_UNMAP, [&](int, unsigned long, void* a) {
      auto* u = static_cast<iommu_ioas_unmap*>(a);
      note(u->iova == kFaultGpa ? "unmap window" : "unmap pin");
      e.k.maps[u->ioas_id].erase(u->iova);
      return 0;
    });
    e.sys.on_ioctl(IOMMU_DESTROY, [&](int, unsigned long, void* a) {
      auto* d = static_cast<iommu_destroy*>(a);
      note("destroy " + e.k.objects[d->id]);
      e.k.objects.erase(d->id);
      return 0;
    });
    e.dev.on_detach = [&] { note("detach"); };
  }
  CHECK(order == std::vector<std::string>{"unmap window", "detach", "destroy hwpt", "destroy fault", "unmap pin"});
  CHECK(e.k.live_maps() == 0);
}

TEST_CASE("dma domain: faults are served; more = true when the queue stops at its read budget") {
  Env e;
  FakeFaultFd ffd;
  ffd.install(e.sys);
  auto dma = DmaDomain::create(e.sys, *e.ioas, {e.dev.ref()}, policy(e.ram)).value();
  // 17 full reads of 64 one-record groups: more than one call's budget of 16 reads.
  constexpr uint32_t kGroups = 17 * 64;
  for (uint32_t c = 1; c <= kGroups; ++c) {
    uint64_t page = uint64_t(c) * 16 % 2048;  // 128 windows of 16 pages, each faulted 8 or 9 times
    ffd.groups.push_back({FakeFaultFd::record(c, kFaultGpa + page * kPageSize, true, 77)});
  }
  CHECK(dma->on_fault_readable().value() == true);
  CHECK(ffd.answers.size() == 16 * 64);
  CHECK(dma->on_fault_readable().value() == false);  // the rest, then the queue ran dry
  CHECK(ffd.answers.size() == kGroups);
  CHECK(dma->on_fault_readable().value() == false);
  auto s = dma->summary();
  CHECK(s["faults"]["groups"] == kGroups);
  CHECK(s["faults"]["reads"] == 17);  // reads that returned records
  CHECK(s["devices"][0]["faults"] == kGroups);
  CHECK(s["regions"][1]["pinned_bytes"] == 8 * kMiB);  // every page of the region touched
  CHECK(dma->pinned_bytes() == 16 * kMiB);
}

TEST_CASE("dma domain: a fault region's premap and window change at run time; pinned regions say how to switch") {
  Env e;
  auto dma = DmaDomain::create(e.sys, *e.ioas, {e.dev.ref()}, policy(e.ram)).value();
  REQUIRE(dma->set_fault_policy(8 * kMiB, 64, std::nullopt).has_value());
  auto s = dma->summary();
  CHECK(s["regions"][1]["premap"] == 64);
  CHECK(s["regions"][1]["window"] == "forward");
  REQUIRE(dma->set_fault_policy(8 * kMiB, std::nullopt, WindowPolicy::kAligned).has_value());
  s = dma->summary();
  CHECK(s["regions"][1]["premap"] == 64);
  CHECK(s["regions"][1]["window"] == "aligned");

  auto pinned = dma->set_fault_policy(0, 64, std::nullopt);
  REQUIRE_FALSE(pinned.has_value());
  CHECK(pinned.error().err() == EINVAL);
  CHECK(pinned.error().message().find("the region is pinned (dma=pin)") != std::string::npos);
  CHECK(pinned.error().message().find("switch it with dma=fault") != std::string::npos);
  auto nowhere = dma->set_fault_policy(4 * kMiB, 64, std::nullopt);
  REQUIRE_FALSE(nowhere.has_value());
  CHECK(nowhere.error().err() == EINVAL);
  auto bad = dma->set_fault_policy(8 * kMiB, 0, std::nullopt);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().err() == EINVAL);
  CHECK(dma->summary()["regions"][1]["premap"] == 64);  // unchanged by the refusals
}

TEST_CASE("dma domain: after a fallback to pinning, a policy change says why; a region pinned by choice does not") {
  Env e;
  DmaPolicy p = policy(e.ram);
  p.fallback_pin = true;
  auto dma = DmaDomain::create(e.sys, *e.ioas, {e.dev.ref(false)}, p).value();
  auto r = dma->set_fault_policy(8 * kMiB, 64, std::nullopt);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().err() == EINVAL);
  CHECK(r.error().message().find("fell back to pinning at start (no-pri)") != std::string::npos);
  auto chosen = dma->set_fault_policy(0, 64, std::nullopt);
  REQUIRE_FALSE(chosen.has_value());
  CHECK(chosen.error().message().find("fell back") == std::string::npos);
  CHECK(chosen.error().message().find("the region is pinned (dma=pin)") != std::string::npos);
  // Switching it to fault tries again, and meets the same reason: nothing changes.
  auto sw = dma->set_dma_mode(8 * kMiB, true, std::nullopt, std::nullopt);
  REQUIRE_FALSE(sw.has_value());
  CHECK(sw.error().err() == EOPNOTSUPP);
  CHECK(sw.error().message().find("no PCIe Page Request Interface") != std::string::npos);
  CHECK(sw.error().message().find("--dma-fallback") == std::string::npos);  // a start-time option
  CHECK(dma->fault_fd() == -1);
  CHECK(dma->pinned_bytes() == 16 * kMiB);
}

// All of RAM pinned at start: no fault setup until a region switches.
static DmaPolicy all_pinned(const Ram& ram) {
  DmaPolicy p = policy(ram);
  p.regions[1].fault = false;
  return p;
}

TEST_CASE("dma domain: pin -> fault at run time sets fault mode up, then fault -> pin maps the region whole") {
  Env e;
  FakeFaultFd ffd;
  ffd.install(e.sys);
  const uint32_t ioas = e.ioas->ioas_id();
  {
    auto dma = DmaDomain::create(e.sys, *e.ioas, {e.dev.ref()}, all_pinned(e.ram)).value();
    CHECK(dma->fault_fd() == -1);
    CHECK(e.dev.attached.empty());
    REQUIRE(e.k.maps[ioas].size() == 2);

    REQUIRE(dma->set_dma_mode(8 * kMiB, true, 32, WindowPolicy::kAligned).has_value());
    CHECK(dma->fault_fd() >= 0);
    REQUIRE(e.dev.attached.size() == 1);  // moved onto the new fault HWPT
    CHECK(e.k.objects[e.dev.attached[0]] == "hwpt");
    CHECK(e.k.last_hwpt.flags == IOMMU_HWPT_FAULT_ID_VALID);
    REQUIRE(e.k.maps[ioas].size() == 1);  // the region's pin is gone, the other stays
    CHECK(e.k.maps[ioas].begin()->first == 16 * kMiB);
    CHECK(dma->pinned_bytes() == 8 * kMiB);
    auto s = dma->summary();
    CHECK(s["policy_switches"] == 1);
    CHECK(s["regions"][1]["dma"] == "fault");
    CHECK(s["regions"][1]["premap"] == 32);
    CHECK(s["regions"][1]["window"] == "aligned");
    CHECK(s["regions"][1]["pinned_bytes"] == 0);
    CHECK(s["regions"][1]["map_calls"] == 1);  // its static pin, before the switch
    CHECK(s["regions"][1]["unmap_calls"] == 1);

    // A fault maps an aligned 32-page window.
    ffd.groups.push_back({FakeFaultFd::record(1, kFaultGpa + 40 * kPageSize, true, 77)});
    CHECK(dma->on_fault_readable().value() == false);
    REQUIRE(ffd.answers.size() == 1);
    CHECK(ffd.answers[0].code == IOMMUFD_PAGE_RESP_SUCCESS);
    REQUIRE(e.k.maps[ioas].count(kFaultGpa + 32 * kPageSize) == 1);
    CHECK(e.k.maps[ioas][kFaultGpa + 32 * kPageSize].len == 32 * kPageSize);
    s = dma->summary();
    CHECK(s["regions"][1]["pinned_bytes"] == 32 * kPageSize);
    CHECK(s["regions"][1]["mappings"] == 1);
    CHECK(s["regions"][1]["faults"] == 1);
    CHECK(s["regions"][1]["map_calls"] == 2);
    CHECK(s["faults"]["map_calls"] == 1);
    CHECK(s["devices"][0]["groups"] == 1);

    // Back to pin: the window goes, the whole region is mapped in one piece.
    REQUIRE(dma->set_dma_mode(8 * kMiB, false, std::nullopt, std::nullopt).has_value());
    REQUIRE(e.k.maps[ioas].count(kFaultGpa) == 1);
    CHECK(e.k.maps[ioas][kFaultGpa].len == 8 * kMiB);
    CHECK(e.k.maps[ioas].size() == 2);
    CHECK(dma->pinned_bytes() == 16 * kMiB);
    s = dma->summary();
    CHECK(s["policy_switches"] == 2);
    CHECK(s["regions"][1]["dma"] == "pin");
    CHECK(s["regions"][1]["pinned_bytes"] == 8 * kMiB);
    CHECK(s["regions"][1]["unmap_calls"] == 2);  // the pin before, the window now
    CHECK(s["regions"][1]["map_calls"] == 3);
    CHECK_FALSE(s["regions"][1].contains("premap"));

    // A late fault there (a device that retried) is answered SUCCESS and maps nothing.
    ffd.groups.push_back({FakeFaultFd::record(2, kFaultGpa + 3 * kMiB, true, 77)});
    CHECK(dma->on_fault_readable().value() == false);
    REQUIRE(ffd.answers.size() == 2);
    CHECK(ffd.answers[1].code == IOMMUFD_PAGE_RESP_SUCCESS);
    CHECK(e.k.maps[ioas].size() == 2);

    // And to fault again: the engine's region is reused, with its new policy.
    REQUIRE(dma->set_dma_mode(8 * kMiB, true, 1, WindowPolicy::kForward).has_value());
    CHECK(e.dev.attached.size() == 1);  // already on the fault HWPT
    CHECK(e.k.maps[ioas].size() == 1);
    ffd.groups.push_back({FakeFaultFd::record(3, kFaultGpa + 5 * kPageSize, true, 77)});
    CHECK(dma->on_fault_readable().value() == false);
    REQUIRE(e.k.maps[ioas].count(kFaultGpa + 5 * kPageSize) == 1);
    CHECK(e.k.maps[ioas][kFaultGpa + 5 * kPageSize].len == kPageSize);
    CHECK(dma->pinned_bytes() == 8 * kMiB + kPageSize);

    // No-ops and bad requests change nothing.
    CHECK(dma->set_dma_mode(0, false, std::nullopt, std::nullopt).has_value());  // pinned already
    CHECK(dma->set_dma_mode(0, false, 4, std::nullopt).error().err() == EINVAL);
    CHECK(dma->set_dma_mode(4 * kMiB, true, std::nullopt, std::nullopt).error().err() == EINVAL);
    CHECK(dma->set_dma_mode(0, true, 0, std::nullopt).error().err() == EINVAL);
    CHECK(dma->summary()["policy_switches"] == 3);
  }
  CHECK(e.dev.detached == 1);
  CHECK(e.clean());
}

TEST_CASE("dma domain: a switch to fault that the backend or device cannot do changes nothing") {
  Env e;
  SUBCASE("type1") {
    NoFaultBackend type1(*e.ioas);
    auto dma = DmaDomain::create(e.sys, type1, {e.dev.ref()}, all_pinned(e.ram)).value();
    auto r = dma->set_dma_mode(8 * kMiB, true, std::nullopt, std::nullopt);
    REQUIRE_FALSE(r);
    CHECK(r.error().err() == EOPNOTSUPP);
    CHECK(r.error().message().find("switching region ram+0x800000 to dma=fault") != std::string::npos);
    CHECK(r.error().message().find("use --iommu-backend=iommufd") != std::string::npos);
    CHECK(dma->pinned_bytes() == 16 * kMiB);
    CHECK(dma->summary()["regions"][1]["dma"] == "pin");
  }
  SUBCASE("the second device's attach is refused: the first goes back onto the IOAS") {
    Dev second;
    auto ref = second.ref();
    ref.name = "dev1";
    ref.attach = [](uint32_t) -> Status { return fail("VFIO_DEVICE_ATTACH_IOMMUFD_PT", ENODEV); };
    auto dma = DmaDomain::create(e.sys, *e.ioas, {e.dev.ref(), ref}, all_pinned(e.ram)).value();
    auto r = dma->set_dma_mode(8 * kMiB, true, std::nullopt, std::nullopt);
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("dev1") != std::string::npos);
    REQUIRE(e.dev.attached.size() == 2);
    CHECK(e.dev.attached[1] == e.ioas->ioas_id());
    CHECK(e.k.live_objects() == 1);  // no HWPT, no fault queue left
    CHECK(dma->fault_fd() == -1);
    CHECK(e.k.maps[e.ioas->ioas_id()].size() == 2);
  }
  CHECK(e.clean());
}

TEST_CASE("dma domain: fault -> pin over the pin limit is refused before anything changes") {
  Env e;
  FakeFaultFd ffd;
  ffd.install(e.sys);
  DmaPolicy p = policy(e.ram);
  p.pin_limit = 12 * kMiB;
  auto dma = DmaDomain::create(e.sys, *e.ioas, {e.dev.ref()}, p).value();
  ffd.groups.push_back({FakeFaultFd::record(1, kFaultGpa, true, 77)});
  CHECK(dma->on_fault_readable().value() == false);
  auto r = dma->set_dma_mode(8 * kMiB, false, std::nullopt, std::nullopt);
  REQUIRE_FALSE(r);
  CHECK(r.error().err() == ENOSPC);
  CHECK(r.error().message().find("over the pin limit") != std::string::npos);
  CHECK(dma->pinned_bytes() == 8 * kMiB + 16 * kPageSize);  // the window is still there
  CHECK(dma->summary()["regions"][1]["dma"] == "fault");
}
