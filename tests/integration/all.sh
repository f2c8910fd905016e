#!/usr/bin/env bash
# Real-kernel tests: inside the testbed's L1 (scripts/test does that for the stock and the
# iommufd kernel), or directly on a host whose KVM runs guests at speed. Argument: the L1
# kernel kind (stock or iommufd), or host. Ends with "integration: N passed, N failed".
# On a host, the VFIO and fault-driven DMA suites run only on devices named explicitly in
# PINLESS_HOST_DEVICES (edu devices bound to vfio-pci, which the tests rebind): a real host's
# devices are never touched otherwise; scripts/test runs those suites in the testbed.
set -uo pipefail
source "$(dirname "$0")/env.sh" "${1:-host}"

if [ "$KIND" = host ]; then
  export PINLESS_EDU_BDFS=${PINLESS_HOST_DEVICES:-}
  where="this host"
else
  where="testbed L1, $KIND kernel"
fi
echo "== real-kernel tests ($where): $(uname -r), $(nproc) cpu(s), edu: [${PINLESS_EDU_BDFS:-}]"

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

# 2. pinless check sees this machine as it is.
source "$HERE/check.sh"

# 3. pinless boots Linux microVMs, obeys its control API, and its threads are under seccomp.
source "$HERE/vmm_boot.sh"
source "$HERE/api.sh"
source "$HERE/seccomp.sh"

# 4. VFIO passthrough, 5. the virtio-iommu, 6. fault-driven DMA with the IOMMUFD_TEST
# mock device, 7. SIGKILL at any moment leaves nothing behind, and 8. a hostile guest
# leaves pinless, the other device and the host unharmed.
if [ "$KIND" = host ] && [ -z "${PINLESS_EDU_BDFS}" ]; then
  echo "== vfio, fault: not on this host (no devices named in PINLESS_HOST_DEVICES); scripts/test runs them in the testbed"
else
  source "$HERE/vfio.sh"
  source "$HERE/viommu.sh"
  source "$HERE/fault.sh"
  source "$HERE/death.sh"
  source "$HERE/hostile.sh"
fi

echo "== where: $where"
it_summary
