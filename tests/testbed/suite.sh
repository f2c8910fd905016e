#!/bin/sh
# Testbed self-test suite: runs INSIDE L1 (scripts/testbed run [--kernel K] --edu N -- suite.sh K).
# usage: suite.sh [stock|iommufd|host]   (default: $PINLESS_TESTBED_KERNEL)
# host: directly on a host with fast KVM: only kvm_smoke (the others need the testbed's
# emulated IOMMU and edu devices, and scripts/test runs them there).
# Prints one line per test and a final "N passed, N failed" line; exits 1 if any failed.
# The iommufd tests may skip (exit 77) on the stock kernel only: a skip on the iommufd
# kernel is a failure, since that kernel is built to have iommufd and its selftest driver.
kernel=${1:-${PINLESS_TESTBED_KERNEL:-}}
case "$kernel" in
  stock|iommufd|host) ;;
  *) echo "usage: suite.sh stock|iommufd|host (or set PINLESS_TESTBED_KERNEL)" >&2; exit 2 ;;
esac
bin=${PINLESS_TESTBED_BIN:-$(cd "$(dirname "$0")" && pwd)}
passed=0 failed=0 skipped=0

now_ms() { date +%s%3N; }

run() { # run NAME [ARGS...]
  name=$1; shift
  if [ ! -x "$bin/$name" ]; then
    echo "FAIL $name: $bin/$name not built"; failed=$((failed + 1)); return
  fi
  t0=$(now_ms)
  out=$("$bin/$name" "$@" 2>&1); rc=$?
  dt=$(( $(now_ms) - t0 ))
  [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/  /'
  case "$rc" in
    0) echo "PASS $name (${dt} ms)"; passed=$((passed + 1)) ;;
    77) if [ "$kernel" = stock ]; then
          echo "SKIP $name (stock kernel: $(printf '%s\n' "$out" | grep -m1 'SKIP:' | sed 's/.*SKIP: //'))"
          skipped=$((skipped + 1))
        else
          echo "FAIL $name: skipped on the iommufd kernel"; failed=$((failed + 1))
        fi ;;
    *) echo "FAIL $name: exit status $rc (${dt} ms)"; failed=$((failed + 1)) ;;
  esac
}

echo "testbed suite: kernel=$kernel ($(uname -r)), edu=[${PINLESS_EDU_BDFS:-}]"
run kvm_smoke
if [ "$kernel" = host ]; then
  echo "(edu and iommufd self-tests: testbed only)"
  echo "$passed passed, $failed failed, $skipped skipped"
  [ "$failed" = 0 ]; exit
fi
run edu_dma_type1
run edu_dma_iommufd
run iommufd_mock_iopf
run fault_engine_mock
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
