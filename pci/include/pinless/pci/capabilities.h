// The one walker of PCI capability lists: the standard list (pointer at 0x34, entries in
// 0x40..0xff, gated by the status register's capability-list bit) and the PCIe extended list
// (from 0x100, entries in 0x100..0xfff). Config space is never trusted to be well formed:
// it comes from a real device (VFIO, sysfs), from a guest's writes, or from our own
// emulation, so every walk stops at a pointer outside its area, at a revisited entry (a
// loop), at a header that reads as absent (all-ones, or 0 for the extended list), and is
// bounded by the number of entries the area can hold.
// Reads go through a ConfigRead32, so the same walk runs over a copy of the bytes or over
// live reads of a device. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

namespace pinless::pci {

// Standard capability ids (PCI Local Bus 3.0, appendix H).
constexpr uint8_t kCapPm = 0x01, kCapMsi = 0x05, kCapVendor = 0x09, kCapPcie = 0x10, kCapMsix = 0x11;
// Extended capability ids (PCIe Base, 7.6): Advanced Error Reporting, Address Translation
// Services, Page Request Interface.
constexpr uint16_t kExtCapAer = 0x0001, kExtCapAts = 0x000f, kExtCapPri = 0x0013;

// Where each list lives: [start, end).
constexpr uint16_t kCapAreaStart = 0x40, kCapAreaEnd = 0x100;
constexpr uint16_t kExtCapAreaStart = 0x100, kExtCapAreaEnd = 0x1000;

// Returns the little-endian dword at a 4-aligned config offset, or 0xffffffff when it cannot
// be read (what an absent register reads as).
using ConfigRead32 = std::function<uint32_t(uint16_t offset)>;

// A reader over a copy of config space; dwords not wholly inside `config` read all-ones, so a
// truncated copy ends a walk instead of being read past. `config` must outlive the reader.
ConfigRead32 read32_from(std::span<const uint8_t> config);

struct CapEntry {
  uint16_t id = 0;      // 8-bit id for the standard list, 16-bit for the extended one
  uint16_t offset = 0;  // of the capability header
};

// The standard list in list order. Empty when the status register has no capability list.
std::vector<CapEntry> walk_capabilities(const ConfigRead32& read32);
// The extended list in list order (empty for conventional PCI, whose 0x100 reads 0 or ~0).
std::vector<CapEntry> walk_ext_capabilities(const ConfigRead32& read32);

// The first capability with `id`, if the list has one.
std::optional<uint16_t> find_capability(const ConfigRead32& read32, uint8_t id);
std::optional<uint16_t> find_ext_capability(const ConfigRead32& read32, uint16_t id);

}  // namespace pinless::pci
