#!/usr/bin/env bash
# Fault-driven DMA end to end (sourced by all.sh after vfio.sh; also runs standalone:
#   scripts/testbed run --kernel iommufd -- tests/integration/fault.sh iommufd).
# pinless runs the idle guest with fault regions on an iommufd it shares with the kernel's
# IOMMUFD_TEST mock device, which tests/testbed/pinless_fault_mock plays: faults per window
# policy and premap, a burst, a fault outside guest RAM, a region switched from pin to fault
# and back at run time, and a clean SIGTERM exit (see the program's header). Needs the
# iommufd kernel: elsewhere (no /dev/iommu) it is skipped.
if [ -z "${IT_PASSED+x}" ]; then  # standalone
  set -uo pipefail
  source "$(dirname "${BASH_SOURCE[0]}")/env.sh" "${1:-host}"
  FAULT_STANDALONE=1
fi

fault_tests() {
  local prog=$BUILD/tests/testbed/pinless_fault_mock
  if [ ! -e /dev/iommu ]; then
    if [ "$KIND" = iommufd ]; then
      it_fail fault-prerequisites "no /dev/iommu on the iommufd kernel"
    else
      echo "SKIP fault: no /dev/iommu on this kernel ($KIND); fault-driven DMA runs with the iommufd kernel"
    fi
    return
  fi
  local f
  for f in "$prog" "$PINLESS" "$INITRD" "$L2_KERNEL"; do
    [ -e "$f" ] || { it_fail fault-prerequisites "missing $f (build first)"; return; }
  done
  echo "== fault: $PINLESS with the IOMMUFD_TEST mock device"
  local rc
  timeout 900 "$prog" "$PINLESS" "$L2_KERNEL" "$INITRD" "$IT_LOG/fault" | tee "$IT_LOG/fault.out"
  rc=${PIPESTATUS[0]}
  if [ "$rc" = 77 ]; then
    it_fail fault "skipped on a kernel with /dev/iommu: $(grep -m1 'SKIP:' "$IT_LOG/fault.out")"
    return
  fi
  local line
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$IT_LOG/fault.out" | tail -1)
  if [ -z "$line" ]; then
    it_fail fault "pinless_fault_mock ended with status $rc and no summary line"
    return
  fi
  IT_PASSED=$((IT_PASSED + $(echo "$line" | cut -d' ' -f1)))
  IT_FAILED=$((IT_FAILED + $(echo "$line" | cut -d' ' -f3)))
  # Logs of each pinless run: $IT_LOG/fault/POLICY.{out,err,json}.
}

fault_tests
if [ "${FAULT_STANDALONE:-0}" = 1 ]; then it_summary; fi
