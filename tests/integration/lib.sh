# Helpers for the real-kernel tests (sourced). Each check prints one PASS/FAIL line; the
# caller prints the summary with it_summary.
IT_PASSED=0
IT_FAILED=0
IT_LOG=${IT_LOG:-/tmp/pinless-it}
mkdir -p "$IT_LOG"

it_pass() { IT_PASSED=$((IT_PASSED + 1)); echo "PASS $1${2:+: $2}"; }
it_fail() { IT_FAILED=$((IT_FAILED + 1)); echo "FAIL $1: $2"; }
it_summary() { echo "integration: $IT_PASSED passed, $IT_FAILED failed"; [ "$IT_FAILED" = 0 ]; }

# it_expect_status NAME WANT CMD...: runs CMD with output in $IT_LOG/NAME.{out,err}, checks
# its exit status; on failure shows the tail of both.
it_run() {
  local name=$1; shift
  "$@" >"$IT_LOG/$name.out" 2>"$IT_LOG/$name.err"
}
it_show() {
  local name=$1
  echo "---- $name stdout (tail) ----"; tail -15 "$IT_LOG/$name.out"
  echo "---- $name stderr (tail) ----"; tail -15 "$IT_LOG/$name.err"
}
