#!/usr/bin/env bash
# `pinless check` on a real kernel (sourced by all.sh; also runs standalone on this machine:
#   tests/integration/check.sh host). Runs the report as text (shown) and as JSON, and checks
# the JSON against what is known of the machine: in the testbed's L1, KVM usable at speed,
# the emulated IOMMU, iommufd on the iommufd kernel only, no PRI device; on the host, a
# verdict consistent with its exit status, and kvm_pvm (no vmx/svm) judged not usable.
if [ -z "${IT_PASSED+x}" ]; then  # standalone
  set -uo pipefail
  source "$(dirname "${BASH_SOURCE[0]}")/env.sh" "${1:-host}"
  CHECK_STANDALONE=1
fi

check_tests() {
  local where=host rc msg
  [ "${PINLESS_TESTBED:-0}" = 1 ] && where="testbed-${PINLESS_TESTBED_KERNEL:-?}-${PINLESS_TESTBED_IOMMU:-?}"
  [ -x "$PINLESS" ] || { it_fail check "missing $PINLESS (build first)"; return; }
  echo "== check: $PINLESS check ($where)"
  "$PINLESS" check >"$IT_LOG/check.txt" 2>&1
  sed 's/^/  /' "$IT_LOG/check.txt"
  "$PINLESS" check --json >"$IT_LOG/check.json" 2>"$IT_LOG/check.err"; rc=$?
  if msg=$(/usr/bin/python3 "$HERE/check_report.py" "$IT_LOG/check.json" "$rc" "$where" 2>&1); then
    it_pass "check-$where" "$msg"
  else
    it_fail "check-$where" "$msg"
  fi
}

check_tests
if [ "${CHECK_STANDALONE:-0}" = 1 ]; then it_summary; fi
