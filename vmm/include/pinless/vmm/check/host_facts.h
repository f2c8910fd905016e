// HostFacts: what `pinless check` found out about this host, as plain data: the KVM device
// and a timed run of guest code, the IOMMU and VFIO interfaces, and the limits that decide
// whether guest RAM can be pinned or backed by huge pages. Gathered by probe_host()
// (host_probe.h), judged by assess() (host_check.h); kept apart so that the judging is a pure
// function, unit-tested with made-up facts. Thread-compatible value types.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pinless::vmm::check {

// The timed probe: the same `dec rcx; jnz` loop inside a one-vCPU long-mode guest and on the
// host, each for a few tens of milliseconds.
struct SpeedFacts {
  double guest_rate = 0;  // loop iterations per second inside the guest
  double host_rate = 0;   // the same loop on the host
  double guest_ms = 0;    // how long the measured guest run took
  double host_ms = 0;
};

struct KvmFacts {
  bool device_present = false;          // the device node exists
  std::string device = "/dev/kvm";
  int open_errno = 0;                    // errno of open(), 0 when it opened
  int api_version = -1;                  // KVM_GET_API_VERSION, -1 when not asked
  std::string setup_error;               // Kvm::open refused beyond open() (capabilities, ...)
  std::vector<std::string> modules;      // KVM modules in /sys/module: kvm_intel, kvm_amd, kvm_pvm,
                                         // ... (built-in ones appear too, so both vendors may)
  std::string hw_virt;                   // "vmx", "svm" or "" (the CPU flags in /proc/cpuinfo)
  std::optional<SpeedFacts> speed;       // the probe's measurement, when it ran
  std::string probe_error;               // why the probe could not measure
};

struct HostFacts {
  KvmFacts kvm;
  std::vector<std::string> iommus;       // /sys/class/iommu/* (dmar0, ivhd0, ...), without the
                                         // IOMMUFD_TEST selftest's mock IOMMU (it has no devices)
  int iommu_groups = 0;                  // /sys/kernel/iommu_groups/*
  bool dev_iommu = false;                // /dev/iommu (iommufd)
  bool vfio_container = false;           // /dev/vfio/vfio (legacy type1 container)
  int vfio_groups = 0;                   // /dev/vfio/<group>
  int vfio_cdevs = 0;                    // /dev/vfio/devices/vfio<N>
  std::optional<bool> unsafe_interrupts_type1;    // vfio_iommu_type1.allow_unsafe_interrupts
  std::optional<bool> unsafe_interrupts_iommufd;  // iommufd.allow_unsafe_interrupts
  std::optional<bool> irq_remapping;     // IR- interrupt chips in /proc/interrupts
  std::vector<std::string> pri_devices;  // PCI devices with a PRI capability (page requests)
  int pci_devices = 0;                   // PCI functions looked at
  bool pci_config_readable = false;      // config space past the 64-byte header was readable
                                         // (sysfs gives non-root users only the header)
  uint64_t memlock_limit = 0;            // RLIMIT_MEMLOCK soft limit, UINT64_MAX = unlimited
  bool cap_ipc_lock = false;             // CAP_IPC_LOCK in the effective set
  uint64_t hugepages_total = 0;          // 2 MiB pages reserved (nr_hugepages)
  uint64_t hugepages_free = 0;
  std::string thp_shmem;                 // the selected word of shmem_enabled, "" if absent
  uint64_t mem_total = 0;                // bytes of RAM
};

}  // namespace pinless::vmm::check
