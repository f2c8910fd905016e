// bench_pin_pinless: the pinless side of scripts/bench-pin. Pins guest RAM exactly as the
// builder does for `--device vfio,...`: GuestMemory (memfd, MAP_SHARED, hugetlbfs or THP
// advice), the DMA backend with the device in it (type1 container + its group, or iommufd
// IOAS + the device cdev bound and attached), then one PinnedRegion per RAM region at
// IOVA = GPA. Times the PinnedRegion::create calls (populate + map) and their teardown.
// Prints one key=value line, the same keys as tests/bench/bare_pin.c. Measurements only.
//
//   bench_pin_pinless --backend type1|iommufd --bdf BDF --size BYTES --backing 4k|thp|hugetlb
//                     [--populate auto|off|N]
// --populate: auto = the default of PinnedRegionSpec (parallel pre-pass when >= 2 CPUs);
// off = never pre-populate; N = always pre-populate with N threads (1 = pinless before the
// parallel path).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "pinless/base/clock.h"
#include "pinless/base/log.h"
#include "pinless/base/sys.h"
#include "pinless/iommu/iommufd_backend.h"
#include "pinless/iommu/pinned_region.h"
#include "pinless/iommu/type1_backend.h"
#include "pinless/vfio/sysfs.h"
#include "pinless/vfio/vfio_device.h"
#include "pinless/vmm/memory/guest_memory.h"

using namespace pinless;

namespace {

struct Args {
  std::string backend, bdf, backing = "4k", populate = "auto";
  uint64_t size = 0;
};

bool parse(int argc, char** argv, Args& a) {
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--backend") a.backend = v;
    else if (k == "--bdf") a.bdf = v;
    else if (k == "--size") a.size = std::strtoull(v.c_str(), nullptr, 0);
    else if (k == "--backing") a.backing = v;
    else if (k == "--populate") a.populate = v;
    else return false;
  }
  return argc % 2 == 1 && !a.backend.empty() && !a.bdf.empty() && a.size != 0;
}

long proc_kb(const char* file, const std::string& key) {
  std::ifstream f(file);
  for (std::string line; std::getline(f, line);) {
    if (line.rfind(key + ":", 0) == 0) return std::strtol(line.c_str() + key.size() + 1, nullptr, 10);
  }
  return 0;
}
long pinned_kb() { return proc_kb("/proc/self/status", "VmLck") + proc_kb("/proc/self/status", "VmPin"); }

int die(const Error& e) {
  std::fprintf(stderr, "bench_pin_pinless: %s\n", e.message().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parse(argc, argv, a)) {
    std::fprintf(stderr, "usage: bench_pin_pinless --backend type1|iommufd --bdf BDF --size BYTES "
                         "--backing 4k|thp|hugetlb [--populate auto|off|N]\n");
    return 2;
  }
  // In pinless the logging registry is set up long before the pin phase (the CLI and KVM
  // log first); creating the process's first spdlog logger costs ~0.3 ms on a host, ~6 ms
  // under TCG, and would otherwise land in the timed PinnedRegion::create.
  (void)logger("bench");
  Sys& sys = linux_sys();
  auto loc = vfio::locate_device(a.bdf);
  if (!loc) return die(loc.error());

  // Declared in dependency order: torn down in reverse (device, then backend, then context).
  std::unique_ptr<iommu::Iommufd> ctx;
  std::unique_ptr<iommu::IommufdBackend> ioas;
  std::unique_ptr<iommu::Type1Backend> container;
  std::unique_ptr<vfio::VfioDevice> device;
  iommu::DmaBackend* backend = nullptr;
  if (a.backend == "type1") {
    auto c = iommu::Type1Backend::open(sys);
    if (!c) return die(c.error());
    container = std::move(*c);
    if (auto g = container->add_group(*loc->group); !g) return die(g.error());
    backend = container.get();
  } else {
    auto c = iommu::Iommufd::open(sys);
    if (!c) return die(c.error());
    ctx = std::move(*c);
    auto i = iommu::IommufdBackend::create(*ctx);
    if (!i) return die(i.error());
    ioas = std::move(*i);
    auto d = vfio::VfioDevice::open_cdev(sys, loc->cdev, *ioas, a.bdf);
    if (!d) return die(d.error());
    device = std::move(*d);
    backend = ioas.get();
  }
  auto mem = vmm::GuestMemory::create(sys, {a.size, a.backing == "hugetlb", a.backing == "thp"});
  if (!mem) return die(mem.error());
  auto allowed = backend->iova_ranges();
  if (!allowed) return die(allowed.error());

  iommu::PinnedRegionSpec proto;
  if (a.populate == "off") proto.populate = false;
  else if (a.populate != "auto") proto.populate_threads = static_cast<unsigned>(std::atoi(a.populate.c_str()));

  // Specs (and their names) are built before the clock starts, as the builder does; this
  // also takes the first fmt call of the process (~0.1 ms on a host: symbol binding) out of
  // the timed part: in pinless, fmt has been used many times before the pin phase.
  std::vector<iommu::PinnedRegionSpec> specs;
  for (const auto& region : mem->regions()) {
    iommu::PinnedRegionSpec spec = proto;
    spec.name = fmt::format("ram@{:#x}", region.gpa.start.value());
    spec.gpa = region.gpa;
    spec.hva = region.hva();
    specs.push_back(spec);
  }
  long pin0 = pinned_kb();
  std::vector<iommu::PinnedRegion> pins;
  uint64_t populate_us = 0, map_us = 0, calls = 0;
  unsigned threads = 0;
  uint64_t t0 = monotonic_ns();
  for (const auto& spec : specs) {
    auto pin = iommu::PinnedRegion::create(*backend, spec, *allowed, nullptr);
    if (!pin) return die(pin.error());
    populate_us += pin->populate_us();
    map_us += pin->map_us();
    calls += pin->map_calls();
    threads = std::max(threads, pin->populate_threads());
    pins.push_back(std::move(*pin));
  }
  uint64_t t1 = monotonic_ns();
  long pinned = pinned_kb() - pin0;
  long huge = 0;
  for (const char* k : {"ShmemPmdMapped", "Shared_Hugetlb", "Private_Hugetlb"}) huge += proc_kb("/proc/self/smaps_rollup", k);
  uint64_t t2 = monotonic_ns();
  pins.clear();
  uint64_t t3 = monotonic_ns();
  std::printf("side=pinless-%s backend=%s backing=%s size=%llu pin_us=%llu populate_us=%llu map_us=%llu map_calls=%llu "
              "threads=%u unmap_us=%llu pinned_kb=%ld huge_kb=%ld\n",
              a.populate.c_str(), a.backend.c_str(), a.backing.c_str(), static_cast<unsigned long long>(a.size),
              static_cast<unsigned long long>((t1 - t0) / 1000), static_cast<unsigned long long>(populate_us),
              static_cast<unsigned long long>(map_us), static_cast<unsigned long long>(calls), threads,
              static_cast<unsigned long long>((t3 - t2) / 1000), pinned, huge);
  return 0;
}
