#!/usr/bin/env bash
# seccomp filters on real guests (sourced by all.sh after api.sh; also runs standalone:
#   scripts/testbed run --kernel iommufd -- tests/integration/seccomp.sh iommufd).
# Every other suite runs with the filters on (the default), so they prove the allowlists
# cover what pinless does; this one proves the filters are there and bite:
#   seccomp-threads     a running 2-vCPU guest: every pinless thread (main/event loop, vcpu0,
#                       vcpu1) is under exactly one filter (/proc/PID/task/*/status:
#                       Seccomp 2, Seccomp_filters 1), and pinless still obeys vm.stop
#   seccomp-vcpu-sigsys --seccomp-selftest vcpu: vcpu0 calls socket(); pinless dies of SIGSYS
#                       (exit 159) with the line naming the thread and the call
#   seccomp-loop-sigsys the same on the event loop
#   seccomp-log         --seccomp log: the same call is let through, the guest runs to PASS
#   seccomp-off         --seccomp off: no filter on any thread
if [ -z "${IT_PASSED+x}" ]; then  # standalone
  set -uo pipefail
  source "$(dirname "${BASH_SOURCE[0]}")/env.sh" "${1:-host}"
  SECCOMP_STANDALONE=1
fi

SC_DIR=$(mktemp -d /tmp/pinless-seccomp-test.XXXXXX)

# sc_guest NAME WANT_RC TEST [pinless args...]: boots the guest running TEST in the foreground.
sc_guest() {
  local name=$1 want=$2 test=$3; shift 3
  it_run "$name" timeout 300 "$PINLESS" run --kernel "$L2_KERNEL" --initrd "$INITRD" --memory size=128M \
    --cmdline "$BASE_CMDLINE pinless.test=$test" "$@"
  local rc=$?
  if [ "$rc" != "$want" ]; then
    it_fail "$name" "pinless exited $rc, want $want"; it_show "$name"; return 1
  fi
}

# sc_threads PID: "comm seccomp filters" per thread of PID, one line each.
sc_threads() {
  local t
  for t in /proc/"$1"/task/*; do
    echo "$(cat "$t/comm") $(awk '/^Seccomp:/ {s=$2} /^Seccomp_filters:/ {f=$2} END {print s, f}' "$t/status")"
  done
}

# sc_running NAME [pinless args...]: starts the ticker guest with 2 vCPUs and an API socket in
# the background; sets SC_PID and waits until it ticks.
sc_running() {
  local name=$1 i; shift
  "$PINLESS" run --kernel "$L2_KERNEL" --initrd "$INITRD" --memory size=128M --cpus 2 \
    --cmdline "$BASE_CMDLINE pinless.test=ticker" --api-socket "$SC_DIR/$name.sock" "$@" \
    </dev/null >"$IT_LOG/$name.out" 2>"$IT_LOG/$name.err" &
  SC_PID=$!
  for i in $(seq 1200); do
    grep -aqE 'ticker [3-9]' "$IT_LOG/$name.out" 2>/dev/null && return 0
    kill -0 "$SC_PID" 2>/dev/null || break
    sleep 0.1
  done
  return 1
}

# sc_stop NAME: vm.stop, and pinless's exit status in SC_RC.
sc_stop() {
  "$PINLESS" ctl --api-socket "$SC_DIR/$1.sock" stop >/dev/null 2>&1 || kill "$SC_PID" 2>/dev/null
  wait "$SC_PID"; SC_RC=$?
}

seccomp_tests() {
  local threads bad vcpus
  if ! sc_running seccomp-threads; then
    it_fail seccomp-threads "the ticker guest did not come up"; it_show seccomp-threads; kill "$SC_PID" 2>/dev/null
  else
    threads=$(sc_threads "$SC_PID")
    bad=$(echo "$threads" | awk '$2 != 2 || $3 != 1')
    vcpus=$(echo "$threads" | grep -c '^vcpu')
    sc_stop seccomp-threads
    if [ -n "$bad" ] || [ "$vcpus" != 2 ]; then
      it_fail seccomp-threads "want every thread under one filter, 2 vCPU threads; got: $(echo "$threads" | tr '\n' ';')"
    elif [ "$SC_RC" != 0 ]; then
      it_fail seccomp-threads "vm.stop: pinless exited $SC_RC"; it_show seccomp-threads
    else
      it_pass seccomp-threads "$(echo "$threads" | awk '{print $1 ": mode " $2 ", " $3 " filter"}' | sort | uniq -c |
        awk '{$1=$1; print}' | tr '\n' ';' | sed 's/;$//'); exit 0 after vm.stop"
    fi
  fi

  local who line
  for who in vcpu loop; do
    line="thread $([ $who = vcpu ] && echo vcpu0 || echo event-loop) called socket (syscall 41)"
    if sc_guest "seccomp-$who-sigsys" 159 boot --seccomp-selftest "$who"; then
      if grep -qF "$line" "$IT_LOG/seccomp-$who-sigsys.err"; then
        it_pass "seccomp-$who-sigsys" "exit 159 (SIGSYS): $(grep -F "$line" "$IT_LOG/seccomp-$who-sigsys.err" | cut -c1-110)"
      else
        it_fail "seccomp-$who-sigsys" "no line saying '$line'"; it_show "seccomp-$who-sigsys"
      fi
    fi
  done

  local before=0 logged
  [ "$KIND" != host ] && before=$(dmesg 2>/dev/null | grep -c 'type=1326')
  if sc_guest seccomp-log 0 boot --seccomp log --seccomp-selftest vcpu; then
    if ! grep -q 'PINLESS-TEST boot PASS' "$IT_LOG/seccomp-log.out"; then
      it_fail seccomp-log "guest did not report PASS"; it_show seccomp-log
    elif ! grep -q 'vcpu0 is still running (socket() succeeded)' "$IT_LOG/seccomp-log.err"; then
      it_fail seccomp-log "the self-test's socket() did not go through"; it_show seccomp-log
    else
      logged="kernel log: not readable here"
      [ "$KIND" != host ] && logged="kernel log: $(($(dmesg 2>/dev/null | grep -c 'type=1326') - before)) new seccomp audit line(s)$(dmesg 2>/dev/null | grep 'type=1326' | tail -1 | grep -oE ' comm="[^"]*"| syscall=[0-9]+' | tr -d '\n')"
      it_pass seccomp-log "socket() let through on vcpu0, guest PASS, exit 0; $logged"
    fi
  fi

  if ! sc_running seccomp-off --seccomp off --seccomp-selftest loop; then
    it_fail seccomp-off "the ticker guest did not come up"; it_show seccomp-off; kill "$SC_PID" 2>/dev/null
  else
    threads=$(sc_threads "$SC_PID")
    sc_stop seccomp-off
    bad=$(echo "$threads" | awk '$2 != 0')
    if ! grep -q 'the event loop is still running (socket() succeeded)' "$IT_LOG/seccomp-off.err"; then
      it_fail seccomp-off "the self-test's socket() did not go through"; it_show seccomp-off
    elif [ -n "$bad" ] || [ "$SC_RC" != 0 ]; then
      it_fail seccomp-off "want no filter and exit 0; got exit $SC_RC, threads: $(echo "$threads" | tr '\n' ';')"
    else
      it_pass seccomp-off "$(echo "$threads" | wc -l) threads, none filtered; the self-test's socket() went through; exit 0"
    fi
  fi
}

echo "== seccomp: $PINLESS"
seccomp_tests
rm -rf "$SC_DIR"
if [ -n "${SECCOMP_STANDALONE:-}" ]; then it_summary; fi
