#!/bin/sh
# Runs the guest-side edu-test (guest-images/src/edu_test.c) directly in L1, to check it
# without pinless: scripts/testbed run --bind none --edu N -- .../tests/testbed/guest_edu_l1.sh
# edu-test DMAs to physical addresses, so each edu's IOMMU group is switched to an identity
# (passthrough) domain first; that needs the device unbound (--bind none).
bin=${PINLESS_GUEST_BIN:-$(cd "$(dirname "$0")/../../guest-images" && pwd)}
[ -n "${PINLESS_EDU_BDFS:-}" ] || { echo "guest_edu_l1: FAIL: no edu devices (--edu N)"; exit 1; }
for d in $PINLESS_EDU_BDFS; do
  if [ -e /sys/bus/pci/devices/$d/driver ]; then
    echo "guest_edu_l1: FAIL: $d is bound to $(basename "$(readlink /sys/bus/pci/devices/$d/driver)"); use --bind none"
    exit 1
  fi
  g=$(basename "$(readlink /sys/bus/pci/devices/$d/iommu_group)")
  if [ -n "$g" ] && [ "$(cat /sys/kernel/iommu_groups/$g/type)" != identity ]; then
    echo identity >/sys/kernel/iommu_groups/$g/type ||
      { echo "guest_edu_l1: FAIL: cannot switch IOMMU group $g of $d to identity"; exit 1; }
  fi
done
exec "$bin/edu-test" "$@"
