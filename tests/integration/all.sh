#!/usr/bin/env bash
# Real-kernel tests: run on a host with /dev/kvm, or inside the testbed's L1 (scripts/test
# does that for the stock and the iommufd kernel). Argument: the L1 kernel kind (stock,
# iommufd or host). Ends with "integration: N passed, N failed".
set -uo pipefail
source "$(dirname "$0")/env.sh" "${1:-host}"

echo "== real-kernel tests ($KIND): $(uname -r), $(nproc) cpu(s), edu: [${PINLESS_EDU_BDFS:-}]"

# 1. The testbed itself: KVM, VFIO type1, iommufd, the mock IOPF device.
SUITE=$BUILD/tests/testbed/suite.sh
if [ -x "$SUITE" ]; then
  "$SUITE" "$KIND" | tee "$IT_LOG/testbed-suite.out"
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$IT_LOG/testbed-suite.out" | tail -1)
  if [ -n "$line" ]; then
    IT_PASSED=$((IT_PASSED + $(echo "$line" | cut -d' ' -f1)))
    IT_FAILED=$((IT_FAILED + $(echo "$line" | cut -d' ' -f3)))
  else
    it_fail testbed-suite "no summary line (suite crashed?)"
  fi
else
  it_fail testbed-suite "$SUITE missing (build first)"
fi

# 2. pinless boots Linux microVMs.
source "$HERE/vmm_boot.sh"

# 3. VFIO passthrough (when present).
[ -f "$HERE/vfio.sh" ] && source "$HERE/vfio.sh"

# 4. Fault-driven DMA with the IOMMUFD_TEST mock device (iommufd kernel only).
[ -f "$HERE/fault.sh" ] && source "$HERE/fault.sh"

it_summary
