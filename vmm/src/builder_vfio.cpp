#include "builder_vfio.h"

#include <chrono>
#include <fmt/format.h>
#include <fstream>
#include <optional>
#include <vector>

#include "pinless/base/clock.h"
#include "pinless/base/log.h"
#include "pinless/base/size.h"
#include "pinless/iommu/backend_select.h"
#include "pinless/iommu/dma_domain.h"
#include "pinless/iommu/iommufd_backend.h"
#include "pinless/iommu/type1_backend.h"
#include "pinless/vfio/sysfs.h"
#include "pinless/vfio/vfio_device.h"
#include "pinless/vfio/vfio_pci_device.h"
#include "pinless/pci/bar_allocator.h"
#include "pinless/vmm/kvm/msi_router.h"
#include "dma/default_domain.h"
#include "dma/mock_device.h"
#include "dma/page_request.h"

namespace pinless::vmm {
namespace {

// Memslots 0..31 are left to guest RAM; VFIO BAR pieces take 32 and up.
constexpr uint32_t kFirstVfioSlot = 32;

struct Located {
  vfio::DeviceLocation loc;
  std::string cdev;  // from path= or sysfs
};

Result<Located> locate(const VmConfig::VfioDevice& spec) {
  Located l;
  std::string bdf = spec.host;
  if (!spec.path.empty()) bdf = PINLESS_TRY(vfio::bdf_of_cdev(spec.path));
  l.loc = PINLESS_TRY(vfio::locate_device(bdf));
  l.cdev = spec.path.empty() ? l.loc.cdev : spec.path;
  return l;
}

// "VmPin:    123 kB" -> 123 (kB); 0 when absent.
uint64_t proc_status_kb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(key) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return std::strtoull(line.c_str() + prefix.size(), nullptr, 10);
  }
  return 0;
}

// After the DMA domain is gone: what the backend and the kernel still count as pinned (0).
void log_dma_released(const iommu::DmaBackend& backend) {
  logger("dma")->info("dma: released all mappings: pinned {} B, VmPin {} kB, VmLck {} kB", backend.mapped_bytes(),
                      proc_status_kb("VmPin"), proc_status_kb("VmLck"));
}

// The domain's steps into the timeline, its steady_clock times as microseconds since start.
void add_phases(Timeline& timeline, const std::vector<iommu::DmaPhase>& phases) {
  using std::chrono::duration_cast;
  using std::chrono::microseconds;
  const uint64_t now_us = us_since_start();
  const auto now = std::chrono::steady_clock::now();
  for (const auto& p : phases) {
    uint64_t start_us = now_us - uint64_t(duration_cast<microseconds>(now - p.start).count());
    timeline.add_phase(p.name, start_us, uint64_t(duration_cast<microseconds>(p.end - p.start).count()),
                       Timeline::Attrs(p.attrs.begin(), p.attrs.end()));
  }
}

}  // namespace

struct VfioSetup::Impl {
  // Declared in dependency order; destroyed in reverse (see ~VfioSetup for the devices).
  std::unique_ptr<iommu::Iommufd> iommufd;
  std::unique_ptr<iommu::IommufdBackend> ioas;
  std::unique_ptr<iommu::Type1Backend> container;
  iommu::DmaBackend* backend = nullptr;
  std::unique_ptr<iommu::DmaDomain> dma;
  std::optional<vfio::KvmVfio> kvm_vfio;
  std::vector<std::shared_ptr<vfio::VfioPciDevice>> devices;
  std::vector<uint8_t> devfns;  // after attach(), per device
  std::vector<int> kvm_files;

  ~Impl() {
    // The KVM VFIO device holds a reference on each file; drop it so closing the device
    // really unbinds it from the IOAS/container. Then devices (irqs off, reset, close)
    // before the pins and the backend.
    if (kvm_vfio) {
      for (int fd : kvm_files) {
        // Teardown goes on: the reference goes when the VM fd closes, only later.
        if (auto st = kvm_vfio->remove_file(fd); !st) logger("vfio")->warn("teardown: {}", st.error().message());
      }
    }
    if (dma) dma->release_devices();  // off the fault HWPTs, so those can be destroyed
    for (auto& d : devices) d->shutdown();
    devices.clear();
    kvm_vfio.reset();
    if (dma) {
      dma.reset();  // fault windows and pins unmapped, HWPTs and fault queue destroyed
      log_dma_released(*backend);
    }
  }
};

VfioSetup::VfioSetup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
VfioSetup::~VfioSetup() = default;

int VfioSetup::fault_fd() const { return impl_->dma ? impl_->dma->fault_fd() : -1; }
Result<bool> VfioSetup::on_fault_readable() { return impl_->dma ? impl_->dma->on_fault_readable() : false; }

void VfioSetup::finish(Timeline& timeline) {
  if (!impl_->dma) return;
  auto summary = impl_->dma->summary();
  const auto& f = summary["faults"];
  logger("dma")->info("dma: pinned {} (peak {}), {} fault groups ({} INVALID), {} pages mapped, {} reclaimed",
                      format_size(summary["pinned_bytes"].get<uint64_t>()),
                      format_size(summary["pinned_peak_bytes"].get<uint64_t>()), f["groups"].get<uint64_t>(),
                      f["invalid_groups"].get<uint64_t>(), f["pages_mapped"].get<uint64_t>(),
                      f["pages_reclaimed"].get<uint64_t>());
  timeline.set_section("dma", summary.dump());
}

nlohmann::ordered_json VfioSetup::dma_summary() const {
  return impl_->dma ? impl_->dma->summary() : nlohmann::ordered_json(nullptr);
}

Status VfioSetup::set_ram_region(uint64_t ram_offset, std::optional<bool> fault, std::optional<uint64_t> premap_pages,
                                 std::optional<iommu::WindowPolicy> window) {
  if (!impl_->dma) {
    return fail("vm.ram-region", ENOTSUP, "no assigned device", "guest RAM has a DMA policy only with --device");
  }
  if (fault) return impl_->dma->set_dma_mode(ram_offset, *fault, premap_pages, window);
  return impl_->dma->set_fault_policy(ram_offset, premap_pages, window);
}

nlohmann::ordered_json VfioSetup::devices_json() const {
  auto out = nlohmann::ordered_json::array();
  const char* backend = impl_->backend ? iommu::backend_name(impl_->backend->kind()) : "none";
  for (size_t i = 0; i < impl_->devices.size(); ++i) {
    nlohmann::ordered_json d{{"host", impl_->devices[i]->device()->name()}, {"backend", backend}, {"domain", "vm"}};
    d["bdf"] = i < impl_->devfns.size()
                   ? nlohmann::ordered_json(fmt::format("00:{:02x}.{}", impl_->devfns[i] >> 3, impl_->devfns[i] & 7))
                   : nlohmann::ordered_json(nullptr);
    out.push_back(std::move(d));
  }
  return out;
}

iommu::Iommufd* VfioSetup::iommufd() const { return impl_->ioas ? impl_->iommufd.get() : nullptr; }
uint32_t VfioSetup::ioas_id() const { return impl_->ioas ? impl_->ioas->ioas_id() : 0; }

Result<std::vector<Range<Iova>>> VfioSetup::iova_ranges() {
  if (!impl_->ioas) return fail("IOAS ranges", ENODEV, "no iommufd IOAS (type1 backend or no device)");
  return impl_->ioas->iova_ranges();
}

std::vector<VfioSetup::Placed> VfioSetup::placed() const {
  std::vector<Placed> out;
  for (size_t i = 0; i < impl_->devices.size() && i < impl_->devfns.size(); ++i) {
    vfio::VfioDevice* d = impl_->devices[i]->device();
    out.push_back({impl_->devfns[i], d->name(), [d](uint32_t pt) { return d->attach_pt(pt); }});
  }
  return out;
}

Result<std::unique_ptr<VfioSetup>> VfioSetup::create(const VmConfig& config, Vm& vm, const GuestMemory& memory,
                                                     IoBus& bus, MsiRouter& router, pci::PciBarAllocator& bars,
                                                     Timeline& timeline, Sys& sys) {
  auto log = logger("vfio");
  auto impl = std::make_unique<Impl>();
  if (!config.has_dma_devices()) return std::unique_ptr<VfioSetup>(new VfioSetup(std::move(impl)));

  // 1. Where the devices are, and which backend serves all of them.
  std::vector<Located> located;
  for (const auto& spec : config.vfio_devices) located.push_back(PINLESS_TRY(locate(spec)));
  // Mock devices live on the passed iommufd (the CLI insists on --iommufd-fd).
  iommu::BackendKind kind = iommu::BackendKind::kIommufd;
  if (!located.empty()) {
    iommu::BackendChoice choice = config.iommu_backend;
    bool all_cdev = true;
    for (const auto& l : located) all_cdev = all_cdev && !l.cdev.empty();
    iommu::BackendProbe probe = iommu::probe_backends(located[0].loc.bdf, all_cdev ? located[0].cdev : "",
                                                      config.iommufd_fd >= 0);
    auto selected = iommu::select_backend(choice, probe);
    if (!selected && config.viommu) {
      return fail("--viommu", selected.error().err(), selected.error().message(),
                  "the guest's IOMMU domains are iommufd IOASes; drop --viommu to pass the device through with type1");
    }
    kind = PINLESS_TRY(std::move(selected));
  }
  {
    auto phase = timeline.phase("dma_backend", {{"backend", iommu::backend_name(kind)}});
    if (kind == iommu::BackendKind::kIommufd) {
      impl->iommufd = config.iommufd_fd >= 0 ? PINLESS_TRY(iommu::Iommufd::adopt(sys, config.iommufd_fd))
                                             : PINLESS_TRY(iommu::Iommufd::open(sys));
      impl->ioas = PINLESS_TRY(iommu::IommufdBackend::create(*impl->iommufd));
      impl->backend = impl->ioas.get();
    } else {
      impl->container = PINLESS_TRY(iommu::Type1Backend::open(sys));
      impl->backend = impl->container.get();
    }
  }
  log->info("DMA backend: {}", iommu::backend_name(kind));

  // 2. Open and reset every device (attaching it to the IOAS / adding its group, so the
  // usable IOVA ranges below already account for its reserved regions).
  std::vector<std::unique_ptr<vfio::VfioDevice>> opened;
  for (const auto& l : located) {
    auto phase = timeline.phase("vfio_reset", {{"device", l.loc.bdf}});
    std::unique_ptr<vfio::VfioDevice> dev;
    if (kind == iommu::BackendKind::kIommufd) {
      if (l.cdev.empty()) {
        return fail("vfio device", ENODEV, l.loc.bdf + " has no VFIO cdev",
                    config.viommu ? "--viommu needs iommufd, and iommufd needs VFIO cdevs (CONFIG_VFIO_DEVICE_CDEV, "
                                    "Linux 6.6 or later); drop --viommu to pass the device through with type1"
                                  : "the kernel needs CONFIG_VFIO_DEVICE_CDEV for iommufd; use --iommu-backend=type1");
      }
      dev = PINLESS_TRY(vfio::VfioDevice::open_cdev(sys, l.cdev, *impl->ioas, l.loc.bdf));
    } else {
      dev = PINLESS_TRY(vfio::VfioDevice::open_group(sys, *impl->container, *l.loc.group, l.loc.bdf));
    }
    phase.attr("reset", dev->can_reset() ? "yes" : "unsupported");
    log->info("{}: opened ({} regions, reset {})", l.loc.bdf, dev->regions().size(),
              dev->can_reset() ? "done" : "unsupported");
    opened.push_back(std::move(dev));
  }

  // Mock devices (tests): onto our IOAS first, so its usable IOVA ranges reflect them.
  std::vector<iommu::DmaDevice> refs;
  for (const auto& mock : config.dma.mocks) {
    int fd = impl->iommufd->fd();
    PINLESS_TRY_VOID(mock_domain_replace(sys, fd, mock.stdev, impl->ioas->ioas_id()));
    iommu::DmaDevice r;
    r.name = fmt::format("mock device {}", mock.idev);
    r.dev_id = mock.idev;
    r.can_fault = true;
    r.attach = [&sys, fd, stdev = mock.stdev](uint32_t pt) { return mock_domain_replace(sys, fd, stdev, pt); };
    r.detach = [&sys, fd, mock] {
      if (auto s = mock_domain_replace(sys, fd, mock.stdev, mock.home); !s) {
        logger("dma")->error("cannot move the mock device home: {}", s.error().message());
      }
    };
    refs.push_back(std::move(r));
  }

  // 3. Guest RAM for DMA, per --ram-region: dma=pin regions mapped and pinned at IOVA = GPA
  // before any vCPU runs; dma=fault regions mapped on demand through the fault queue.
  for (auto& dev : opened) {
    vfio::VfioDevice* d = dev.get();
    iommu::DmaDevice r;
    r.name = d->name();
    r.dev_id = d->devid();
    auto pri = page_request_support([d](uint16_t off) {
      auto v = d->config_read(off, 4);
      return v ? *v : 0xffffffffu;
    });
    r.can_fault = pri.can_fault;
    r.why_not = pri.why_not;
    if (impl->ioas) {
      uint32_t ioas_id = impl->ioas->ioas_id();
      r.attach = [d](uint32_t pt) { return d->attach_pt(pt); };
      r.detach = [d, ioas_id] {
        if (auto s = d->attach_pt(ioas_id); !s) logger("dma")->warn("{}", s.error().message());
      };
    }
    refs.push_back(std::move(r));
  }
  std::vector<iommu::DmaPhase> phases;
  auto dma = iommu::DmaDomain::create(sys, *impl->backend, std::move(refs),
                                      dma_domain_policy(memory.regions(), config.dma), &phases);
  add_phases(timeline, phases);
  if (!dma) {
    log_dma_released(*impl->backend);  // a failed domain undid what it had done
    return std::unexpected(std::move(dma.error()));
  }
  impl->dma = std::move(*dma);

  // 4. Guest-facing devices.
  impl->kvm_vfio.emplace(PINLESS_TRY(vfio::KvmVfio::create(sys, vm.fd())));
  for (size_t i = 0; i < opened.size(); ++i) {
    std::string bdf = opened[i]->name();
    auto phase = timeline.phase("vfio_bars", {{"device", bdf}});
    int kvm_file = opened[i]->kvm_file_fd();
    PINLESS_TRY_VOID(impl->kvm_vfio->add_file(kvm_file));
    impl->kvm_files.push_back(kvm_file);
    vfio::VfioPciDevice::Env env{&vm, &bus, &router,
                                 kFirstVfioSlot + uint32_t(i) * vfio::VfioPciDevice::kSlotsPerDevice};
    auto dev = PINLESS_TRY(vfio::VfioPciDevice::create(sys, std::move(opened[i]), env));
    PINLESS_TRY_VOID(bars.assign(dev->config()));
    for (const auto& b : dev->bars()) {
      log->info("{}: BAR {} {} bytes at {:#x}", bdf, b.index, b.size, b.address);
    }
    impl->devices.push_back(std::move(dev));
  }
  return std::unique_ptr<VfioSetup>(new VfioSetup(std::move(impl)));
}

Status VfioSetup::attach(pci::PciRoot& root) {
  for (auto& d : impl_->devices) {
    uint8_t devfn = PINLESS_TRY(root.add_device(d));
    impl_->devfns.push_back(devfn);
    logger("vfio")->info("{} at 00:{:02x}.{}", d->name(), devfn >> 3, devfn & 7);
  }
  return {};
}

}  // namespace pinless::vmm
