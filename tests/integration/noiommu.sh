#!/usr/bin/env bash
# Real-kernel tests in an L1 without any IOMMU (scripts/testbed run --iommu none): pinless
# check sees no IOMMU, and VFIO names the missing IOMMU as the cause (vfio.sh). Ends with
# "integration: N passed, N failed".
set -uo pipefail
source "$(dirname "$0")/env.sh" "${1:-iommufd}"
echo "== real-kernel tests without an IOMMU: $(uname -r), edu: [${PINLESS_EDU_BDFS:-}]"
source "$HERE/check.sh"
source "$HERE/vfio.sh"
it_summary
