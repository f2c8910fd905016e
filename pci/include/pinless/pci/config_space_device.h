// ConfigSpaceDevice: a PciDevice that is nothing but a PciConfigSpace: the host bridge,
// simple emulated functions, and a base for emulated devices that only need to react to BAR
// moves. Owns its config space. Thread-compatible (PciRoot serialises config access).
#pragma once

#include <string>
#include <utility>

#include "pinless/pci/config_space.h"
#include "pinless/pci/pci_device.h"

namespace pinless::pci {

class ConfigSpaceDevice : public PciDevice {
 public:
  ConfigSpaceDevice(std::string name, const PciIdentity& id) : name_(std::move(name)), config_(id) {}

  uint32_t config_read(uint16_t offset, uint8_t size) override { return config_.read(offset, size); }
  void config_write(uint16_t offset, uint8_t size, uint32_t value) override {
    config_.write(offset, size, value);
  }
  std::vector<BarInfo> bars() const override { return config_.bars(); }
  void set_bar_move_handler(BarMoveFn fn) override { config_.set_bar_move_handler(std::move(fn)); }
  std::string name() const override { return name_; }

  PciConfigSpace& config() { return config_; }
  const PciConfigSpace& config() const { return config_; }

 private:
  std::string name_;
  PciConfigSpace config_;
};

}  // namespace pinless::pci
