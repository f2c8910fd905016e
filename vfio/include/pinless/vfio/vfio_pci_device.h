// VfioPciDevice: a VFIO-passed-through PCI function as the guest sees it on bus 0.
// The real device stays behind VfioDevice; this class virtualises its config space:
//   - header (0x00..0x3f): a PciConfigSpace built from the device's ids, with BARs sized from
//     the VFIO regions (guest sizing and relocation emulated, addresses from PciBarAllocator);
//     the command register's I/O, memory and bus-master bits are also written to the device
//     (vfio-pci never sets bus master itself), INTx stays disabled (no INTx routing);
//   - capabilities: the real list is walked; MSI and MSI-X are emulated (their bytes live in
//     the PciConfigSpace with the writable bits of the spec), power management is passed
//     through read-only, all others are unlinked (hidden), as is one that runs past 0xff or
//     overlaps one kept before it (malformed lists); extended space (0x100+) reads 0;
//   - other bytes of 0x40..0xff read live from the device; guest writes there are dropped.
// BARs: each memory BAR's mmappable parts (VFIO sparse areas minus the MSI-X table/PBA pages)
// are mmap()ed and set as memory slots (KVM memslots) at the guest BAR address; the rest (and
// I/O BARs) is trapped on the I/O registry: the MSI-X table/PBA go to an MsixTable, anything else to the
// device with pread/pwrite. Moves follow the guest's BAR writes.
// Expansion ROM: when VFIO has a ROM region (index 6, size > 0) the ROM BAR at 0x30 is
// emulated (size rounded up to a power of two, at least 2 KiB; address bits and the enable bit
// writable, sizing with all-ones); while it is enabled at a nonzero address with memory decode
// on, its range is a read-only MMIO trap reading the region with pread. Without a ROM, 0x30
// reads 0 and ignores writes.
// Interrupts: one eventfd per MSI/MSI-X vector, bound to the device with VFIO_DEVICE_SET_IRQS
// and to KVM through MsiRoutes::attach_irqfd, so an interrupt goes device -> eventfd -> KVM
// irqfd without waking pinless.
// The VM comes in through pci/platform.h (MemorySlots, IoRegistry, MsiRoutes; in pinless
// vmm's Vm, IoBus and MsiRouter), so this layer needs nothing from vmm.
// Code: vfio_pci_device.cpp (lifecycle, config virtualisation), vfio_pci_bars.cpp (BARs,
// traps, expansion ROM), vfio_pci_interrupts.cpp (MSI, MSI-X).
// Ownership: owns the VfioDevice, the eventfds, GSIs, memslots and BAR mappings; borrows the
// three VM interfaces, which must outlive shutdown(). PciRoot keeps a shared_ptr, so the
// owner calls shutdown() (idempotent; also run by the destructor) before the DMA backend and
// router go away; afterwards config reads return all-ones.
// Thread-safety: config access is serialised by PciRoot. BAR placement (a guest BAR or ROM
// write, shutdown) takes bar_mu_. BAR trap accesses run on vCPU threads and take no lock of
// this class: pread/pwrite on the device fd need none and the MsixTable has its own lock.
// shut_ is atomic so an access that races shutdown() sees all-ones; pinless itself joins the
// vCPU threads before shutdown(), so that race exists only for other owners.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "pinless/base/fd.h"
#include "pinless/base/log.h"
#include "pinless/base/result.h"
#include "pinless/base/sys.h"
#include "pinless/base/types.h"
#include "pinless/pci/config_space.h"
#include "pinless/pci/io_device.h"
#include "pinless/pci/msix_table.h"
#include "pinless/pci/pci_device.h"
#include "pinless/pci/platform.h"
#include "pinless/vfio/pci_caps.h"
#include "pinless/vfio/vfio_device.h"

namespace pinless::vfio {

class VfioPciDevice final : public pci::PciDevice {
 public:
  static constexpr uint32_t kSlotsPerBar = 4;
  static constexpr uint32_t kSlotsPerDevice = kSlotsPerBar * pci::kNumBars;
  static constexpr uint32_t kMaxMsiVectors = 32;
  static constexpr uint32_t kRomRegion = 6;           // VFIO_PCI_ROM_REGION_INDEX
  static constexpr uint64_t kMinRomSize = 2048;
  static constexpr uint64_t kMaxRomSize = 16u << 20;  // PCI: the ROM BAR decodes at most 16 MiB

  struct Env {
    pci::MemorySlots* memslots = nullptr;  // for mmapped BAR parts (null: nothing mmapped, all trapped)
    pci::IoRegistry* bus = nullptr;
    pci::MsiRoutes* router = nullptr;  // null: no MSI/MSI-X (tests of config space only)
    uint32_t first_slot = 0;           // memslots first_slot .. first_slot + kSlotsPerDevice - 1
  };

  [[nodiscard]] static Result<std::shared_ptr<VfioPciDevice>> create(Sys& sys, std::unique_ptr<VfioDevice> dev,
                                                                     Env env);
  ~VfioPciDevice() override;

  uint32_t config_read(uint16_t offset, uint8_t size) override;
  void config_write(uint16_t offset, uint8_t size, uint32_t value) override;
  std::vector<pci::BarInfo> bars() const override { return config_.bars(); }
  void set_bar_move_handler(pci::BarMoveFn fn) override { external_move_ = std::move(fn); }
  std::string name() const override { return "vfio " + name_; }

  pci::PciConfigSpace& config() { return config_; }
  VfioDevice* device() { return dev_.get(); }
  const std::vector<PciCap>& kept_capabilities() const { return kept_caps_; }
  std::optional<MsiCapInfo> msi() const { return msi_; }
  std::optional<MsixCapInfo> msix() const { return msix_cap_; }
  // Guest-physical pieces currently backed by memslots (for tests and logs).
  std::vector<Range<Gpa>> mapped_pieces() const;
  // The expansion ROM: its (rounded) size, 0 if none, and where it is trapped now.
  uint64_t rom_size() const { return rom_size_; }
  std::optional<uint64_t> rom_at() const { return rom_at_; }
  // Interrupts off, GSIs released, memslots and traps removed, device reset and closed.
  void shutdown();

 private:
  struct Vector {
    UniqueFd event;
    uint32_t gsi = 0;
  };
  // An I/O range that forwards to the device (MSI-X table/PBA or pread/pwrite).
  class Trap final : public pci::IoDevice {
   public:
    Trap(VfioPciDevice& d, uint8_t bar, uint64_t base) : dev_(d), bar_(bar), base_(base) {}
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

   private:
    VfioPciDevice& dev_;
    uint8_t bar_;
    uint64_t base_;
  };
  // `live`: whether the piece is in KVM / on the bus now. The guest picks BAR addresses, so a
  // placement can be refused (over RAM, COM1, the ECAM window...); only what was accepted is
  // undone, else the unplace would remove another device's range.
  // A mapped piece is also claimed on the I/O registry (`claim`, which forwards to the device
  // like a trap if an access ever reaches it): KVM only refuses a memslot over another memslot,
  // so without the claim a BAR over the ECAM window, the in-kernel IOAPIC/LAPIC or another
  // device's trapped range would shadow it for the whole guest.
  struct Piece {
    Range<uint64_t> in_bar;   // offset/size inside the BAR
    MappedMemory map;
    uint32_t slot = 0;
    std::unique_ptr<Trap> claim;
    bool live = false;        // claimed (with a bus) and memslot set
  };
  struct TrapPiece {
    Range<uint64_t> in_bar;
    std::unique_ptr<Trap> trap;
    bool live = false;  // registered on the bus
  };
  struct BarState {
    bool present = false;
    pci::BarKind kind = pci::BarKind::kMem32;
    uint64_t size = 0;
    std::vector<Piece> mapped;         // mmapped
    std::vector<TrapPiece> trapped;    // forwarded through the bus
    std::optional<uint64_t> at;        // decoded at
  };

  VfioPciDevice(Sys& sys, std::unique_ptr<VfioDevice> dev, Env env, const pci::PciIdentity& id);
  Status build(std::span<const uint8_t> real);
  Status setup_bars(std::span<const uint8_t> real);
  Status setup_caps(std::span<const uint8_t> real);
  Status setup_vectors();
  void setup_rom();
  void rom_write(uint16_t offset, uint8_t size, uint32_t value);
  void sync_rom();
  void on_bar_move(const pci::BarMove& m);
  void unplace_bar(uint8_t index, uint64_t at);
  void place_bar(uint8_t index, uint64_t at);
  void sync_command();
  void sync_msi();
  void sync_msix_control();
  void bar_access(uint8_t bar, uint64_t offset, std::span<uint8_t> data, bool is_write);
  bool emulated(uint16_t offset) const { return offset < 256 && emulated_[offset]; }

  Sys& sys_;
  std::unique_ptr<VfioDevice> dev_;
  Env env_;
  std::string name_;
  pci::PciConfigSpace config_;
  std::array<bool, 256> emulated_{};
  std::array<uint8_t, 256> real_{};
  std::vector<PciCap> kept_caps_;
  std::optional<MsiCapInfo> msi_;
  std::optional<MsixCapInfo> msix_cap_;
  std::optional<pci::MsixTable> msix_;
  std::vector<Vector> msi_vectors_;
  std::vector<Vector> msix_vectors_;
  bool msi_on_ = false;
  uint32_t msi_nvec_ = 0;
  bool msix_on_ = false;
  std::array<BarState, pci::kNumBars> bars_{};
  pci::BarMoveFn external_move_;
  uint64_t rom_size_ = 0;              // 0: no ROM
  uint32_t rom_reg_ = 0;               // the guest's view of 0x30
  std::optional<uint64_t> rom_at_;     // where the ROM trap is registered
  std::unique_ptr<Trap> rom_trap_;     // bar = kRomRegion
  std::mutex bar_mu_;  // BAR and ROM placement (guest config writes) vs shutdown()
  std::atomic<bool> shut_{false};
  RateLimit warn_{5, 10000};
};

}  // namespace pinless::vfio
