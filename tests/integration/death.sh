#!/usr/bin/env bash
# Death at any moment (sourced by all.sh after fault.sh; also runs standalone:
#   scripts/testbed run --kernel iommufd --edu 2 -- tests/integration/death.sh iommufd).
# pinless is SIGKILLed at points spread over a run of a guest that DMAs with an edu device in a
# loop (guest test edu-loop): opening and resetting the device, pinning 256M, booting, while
# the guest DMAs, and during shutdown (SIGTERM first, SIGKILL a moment later), DEATH_POINTS
# per DMA backend. Every pinless runs
# without CAP_IPC_LOCK under RLIMIT_MEMLOCK = 384M, so a pin charge left behind by a dead one
# (iommufd charges the user) makes the next one fail. After each kill:
#   - the kernel gives the guest RAM back: MemAvailable returns to within DEATH_SLACK_MB of
#     what it was before that pinless started (guest RAM left pinned would keep up to 256M);
#   - the next pinless opens the same device and pins again (no leftover binding, group
#     owner, IOAS, HWPT or charge);
# and at the end a whole edu run passes on the device. One PASS/FAIL line per point, with the
# phase pinless was in when it died (from its log).
if [ -z "${IT_PASSED+x}" ]; then  # standalone
  set -uo pipefail
  source "$(dirname "${BASH_SOURCE[0]}")/env.sh" "${1:-host}"
  DEATH_STANDALONE=1
fi

DEATH_POINTS=${DEATH_POINTS:-15}
DEATH_SLACK_MB=${DEATH_SLACK_MB:-64}
DEATH_WRAP=(prlimit --memlock=$((384 << 20)):$((384 << 20)) setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock)

death_mem_kb() { awk '/^MemAvailable:/ { print $2 }' /proc/meminfo; }

# death_start NAME BACKEND BDF [TEST]: pinless with the edu test (or TEST: edu-loop DMAs until
# it is killed) in the background (prlimit and setpriv exec it, so $! is pinless's pid).
# Sets DEATH_PID.
death_start() {
  local name=$1 b=$2 bdf=$3 test=${4:-edu}
  "${DEATH_WRAP[@]}" "$PINLESS" run --kernel "$L2_KERNEL" --initrd "$INITRD" --memory size=256M \
    --cmdline "$BASE_CMDLINE pinless.test=$test" --log-level info --device "vfio,host=$bdf" --iommu-backend "$b" \
    >"$IT_LOG/$name.out" 2>"$IT_LOG/$name.err" &
  DEATH_PID=$!
}

# death_phase NAME: where the pinless of run NAME was, from what it had logged.
death_phase() {
  local out=$IT_LOG/$1.out err=$IT_LOG/$1.err
  if grep -q 'dma: released' "$err"; then echo teardown
  elif grep -q 'PINLESS-TEST edu' "$out"; then echo guest-poweroff
  elif grep -q '^edu-loop [0-9]* ok' "$out"; then echo "guest-dma (round $(grep -c '^edu-loop [0-9]* ok' "$out"))"
  elif grep -q 'guest started' "$err"; then echo guest-boot
  elif grep -q 'pinned .* at IOVA' "$err"; then echo after-pin
  elif grep -q ': opened (' "$err"; then echo pinning
  elif grep -q 'DMA backend' "$err"; then echo device-open-reset
  else echo startup
  fi
}

# death_point NAME BACKEND BDF DELAY_MS TERM_MS: SIGKILL after DELAY_MS (TERM_MS >= 0: SIGTERM
# at DELAY_MS, SIGKILL TERM_MS later), then the checks above.
death_point() {
  local name=$1 b=$2 bdf=$3 delay=$4 term=$5 before after i phase how alive=yes rc
  before=$(death_mem_kb)
  death_start "$name" "$b" "$bdf" edu-loop
  sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
  kill -0 "$DEATH_PID" 2>/dev/null || alive=no
  phase=$(death_phase "$name")
  if [ "$term" -ge 0 ]; then
    kill -TERM "$DEATH_PID" 2>/dev/null
    sleep "$(printf '0.%03d' "$term")"
    how="SIGTERM at $delay ms ($phase), SIGKILL $term ms later"
    phase="shutdown: $(death_phase "$name")"
  else
    how="SIGKILL at $delay ms"
  fi
  kill -KILL "$DEATH_PID" 2>/dev/null
  wait "$DEATH_PID"; rc=$?
  # It must have been running: an exit before the kill means it could not start (or the
  # guest's DMA failed).
  if [ "$alive" = no ]; then
    it_fail "$name" "pinless had already exited $rc before the kill: $(grep -m1 -i 'error\|pinless:' "$IT_LOG/$name.err" | cut -c1-300)"
    return
  fi
  # The kernel frees a dead process's memory at once, but not always within one sample:
  # wait (10 s at most) until it is back within 16 MiB; pass within DEATH_SLACK_MB (page cache
  # and slab move MemAvailable by tens of MiB; a guest RAM left pinned would keep 256M).
  for i in $(seq 50); do
    after=$(death_mem_kb)
    [ $((before - after)) -le $((16 * 1024)) ] && break
    sleep 0.2
  done
  local below=$(((before - after) / 1024)) waited=$(((i - 1) * 200))
  if [ "$below" -le "$DEATH_SLACK_MB" ]; then
    it_pass "$name" "$how, phase $phase (exit $rc): MemAvailable $((after / 1024)) MiB, $below MiB below before it started, after $waited ms"
  else
    it_fail "$name" "$how, phase $phase (exit $rc): MemAvailable still $below MiB below before it started after $waited ms (want <= $DEATH_SLACK_MB MiB)"
  fi
}

death_backend() {
  local b=$1 bdf=$2 t0 full k delay term name
  # A whole run first: how long one lasts, and that it passes here at all.
  name=death-$b-whole
  t0=$(date +%s%N)
  death_start "$name" "$b" "$bdf"
  wait "$DEATH_PID"; local rc=$?
  full=$((($(date +%s%N) - t0) / 1000000))
  if [ "$rc" != 0 ] || ! grep -q 'PINLESS-TEST edu PASS' "$IT_LOG/$name.out"; then
    it_fail "$name" "a whole run under the memlock limit exited $rc"; it_show "$name"; return
  fi
  it_pass "$name" "a whole edu run without CAP_IPC_LOCK under RLIMIT_MEMLOCK 384M: $full ms"
  # Points spread over the run and 60% beyond it, where the guest DMAs in a loop (edu-loop):
  # the k-th in [k, k+1) / N of that; every fourth one during shutdown.
  local span=$((full * 16 / 10))
  for k in $(seq 0 $((DEATH_POINTS - 1))); do
    delay=$((span * k / DEATH_POINTS + RANDOM % (span / DEATH_POINTS + 1)))
    term=-1
    [ $((k % 4)) = 3 ] && term=$((RANDOM % 200))
    death_point "death-$b-$(printf %02d "$k")" "$b" "$bdf" "$delay" "$term"
  done
  # Afterwards the device works, and nothing is charged any more: a whole run passes.
  name=death-$b-after
  death_start "$name" "$b" "$bdf"
  wait "$DEATH_PID"; rc=$?
  if [ "$rc" = 0 ] && grep -q 'PINLESS-TEST edu PASS' "$IT_LOG/$name.out"; then
    it_pass "$name" "after $DEATH_POINTS kills: $bdf opens, 256M pins under the same limit, the edu test passes"
  else
    it_fail "$name" "after $DEATH_POINTS kills the edu run exited $rc"; it_show "$name"
  fi
}

death_tests() {
  local bdfs=(${PINLESS_EDU_BDFS:-}) b
  # The iommufd L1 has both backends; the stock one would only repeat type1.
  if [ "$KIND" = stock ]; then echo "SKIP death: runs in the iommufd L1 (both backends)"; return; fi
  if [ "${#bdfs[@]}" = 0 ] || [ -z "$(ls /sys/kernel/iommu_groups 2>/dev/null)" ]; then
    echo "SKIP death: no edu device behind an IOMMU here"; return
  fi
  if ! command -v setpriv >/dev/null || ! command -v prlimit >/dev/null; then
    it_fail death-prerequisites "setpriv/prlimit (util-linux) missing"; return
  fi
  echo "== death: SIGKILL at $DEATH_POINTS points per backend, ${bdfs[0]}"
  for b in iommufd type1; do
    case $b in iommufd) [ -e /dev/iommu ] || continue ;; type1) [ -e /dev/vfio/vfio ] || continue ;; esac
    death_backend "$b" "${bdfs[0]}"
  done
}

death_tests
if [ "${DEATH_STANDALONE:-0}" = 1 ]; then it_summary; fi
