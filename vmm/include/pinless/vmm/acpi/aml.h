// A small AML (ACPI Machine Language) builder: just the constructs pinless's DSDT needs
// (names, scopes, devices, integers, strings, EISA ids, packages, buffers, simple methods,
// Notify and resource templates). Every function returns the encoded bytes of one term, so
// terms compose as values: device("COM1", {name("_HID", eisa_id("PNP0501")), ...}).
// Encodings follow ACPI 6.x section 20 (AML grammar) and 6.4 (resource descriptors).
// Pure functions and a value-type ResourceTemplate; thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace pinless::vmm::acpi::aml {

using Bytes = std::vector<uint8_t>;

// PkgLength for `content_len` bytes that follow it (the encoding counts itself).
Bytes pkg_length(size_t content_len);
// A NameString: "\\_SB.PCI0", "^FOO", "_HID". Segments shorter than four chars are padded
// with '_'. Names are ours (not guest input): a malformed one is a programming error.
Bytes name_string(std::string_view path);

// Data objects.
Bytes integer(uint64_t v);  // Zero/One/Ones or the smallest Byte/Word/DWord/QWord prefix
Bytes string(std::string_view s);
Bytes eisa_id(std::string_view id);  // "PNP0A03" -> DWord 0x030ad041
Bytes buffer(std::span<const uint8_t> bytes);
Bytes package(const std::vector<Bytes>& elements);

// Named objects and scopes.
Bytes name(std::string_view path, const Bytes& value);
Bytes scope(std::string_view path, const std::vector<Bytes>& terms);
Bytes device(std::string_view path, const std::vector<Bytes>& terms);
Bytes method(std::string_view path, uint8_t arg_count, bool serialized,
             const std::vector<Bytes>& terms);
Bytes return_value(const Bytes& value);
// Notify(path, value): queue a notification for the object at `path` (e.g. 0x80, "status
// changed", which a PNP0C0C power button reports as a button press). `value` is a TermArg,
// usually integer(...).
Bytes notify(std::string_view path, const Bytes& value);

// Interrupt modes of an Extended Interrupt descriptor.
enum class Trigger : uint8_t { kLevel, kEdge };
enum class Polarity : uint8_t { kActiveHigh, kActiveLow };

// Resource template builder (the _CRS buffer). Descriptors are appended in call order;
// build() appends the End Tag and wraps the result in a Buffer.
class ResourceTemplate {
 public:
  // IO(Decode16, min, max, align, len): a fixed or relocatable 16-bit I/O range.
  ResourceTemplate& io(uint16_t min, uint16_t max, uint8_t align, uint8_t len);
  // IRQNoFlags(){irq}: edge-triggered, active-high ISA interrupt 0..15.
  ResourceTemplate& irq_no_flags(uint8_t irq);
  // Interrupt(ResourceConsumer, trigger, polarity, Exclusive){gsi}: one GSI, not wake
  // capable, no resource source (the GSI is global, not on a named interrupt controller).
  ResourceTemplate& extended_interrupt(uint32_t gsi, Trigger trigger, Polarity polarity);
  // Memory32Fixed(ReadWrite, base, len).
  ResourceTemplate& memory32_fixed(uint32_t base, uint32_t len);
  // Address space descriptors as a ResourceProducer with MinFixed, MaxFixed, PosDecode and
  // no translation; [min, max] is inclusive.
  ResourceTemplate& word_bus_number(uint16_t min, uint16_t max);
  ResourceTemplate& word_io(uint16_t min, uint16_t max);
  ResourceTemplate& dword_memory(uint32_t min, uint32_t max, bool prefetchable);
  ResourceTemplate& qword_memory(uint64_t min, uint64_t max, bool prefetchable);

  // Descriptors without the End Tag.
  const Bytes& descriptors() const { return bytes_; }
  // Buffer(){descriptors, EndTag}.
  Bytes build() const;

 private:
  Bytes bytes_;
};

}  // namespace pinless::vmm::acpi::aml
