#!/usr/bin/env bash
# VFIO passthrough on real kernels (sourced by all.sh after vmm_boot.sh; also runs standalone:
#   scripts/testbed run --kernel iommufd --edu 2 -- tests/integration/vfio.sh iommufd).
# With each DMA backend the L1 kernel offers: the L2 test guest's `edu` test (DMA RAM ->
# device -> RAM, MSIs) with one device, with two devices in one guest, and in two guests at
# once; guest RAM pinned while the VM runs and released at teardown (pinless's final
# "dma: released" line, and a second run of the same device); a device held by another VM is
# refused with the holder named; RLIMIT_MEMLOCK too low without CAP_IPC_LOCK is refused with
# the limit to set, and how each backend charges pinned memory (per process / per user).
# Then the errors for a nonexistent BDF, a device not bound to vfio-pci, a forced backend
# that is not available, and a final check that every device is still bound and reusable.
# In a host without any IOMMU (scripts/testbed run --iommu none) it checks only that pinless
# names the missing IOMMU as the cause.
if [ -z "${IT_PASSED+x}" ]; then  # standalone
  set -uo pipefail
  source "$(dirname "${BASH_SOURCE[0]}")/env.sh" "${1:-host}"
  VFIO_STANDALONE=1
fi

# vfio_guest NAME BACKEND BDF...: boots the edu test with every BDF passed through; samples
# VmLck and VmPin of the running pinless into $IT_LOG/NAME.pin. Returns pinless's exit status.
# VFIO_WRAP (an array, may be empty) prefixes the pinless command (e.g. setpriv).
VFIO_WRAP=()
vfio_guest() {
  local name=$1 backend=$2 pid d devs=(); shift 2
  for d in "$@"; do devs+=(--device "vfio,host=$d"); done
  : >"$IT_LOG/$name.pin"
  timeout 120 "${VFIO_WRAP[@]}" "$PINLESS" run --kernel "$L2_KERNEL" --initrd "$INITRD" --memory size=${VFIO_MEM:-256M} \
    --cmdline "$BASE_CMDLINE pinless.test=${VFIO_TEST:-edu}" --timeline="$IT_LOG/$name.json" --log-level info \
    "${devs[@]}" --iommu-backend "$backend" >"$IT_LOG/$name.out" 2>"$IT_LOG/$name.err" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    # $pid is `timeout`; pinless is its child (or the wrapper's, which execs it).
    local cpid; cpid=$(pgrep -P "$pid" | head -1)
    [ -n "$cpid" ] && grep -E '^(VmLck|VmPin):' "/proc/$cpid/status" 2>/dev/null | tr '\n' ' ' >>"$IT_LOG/$name.pin"
    echo >>"$IT_LOG/$name.pin"
    sleep 0.3
  done
  wait "$pid"
}

# vfio_edu_ok NAME RC N: the guest's edu test passed on all N devices, each with DMA verified
# and at least 10 MSIs (2 DMA completions + 8 raised). Prints why not on failure.
vfio_edu_ok() {
  local name=$1 rc=$2 n=$3 out=$IT_LOG/$1.out
  if [ "$rc" != 0 ]; then echo "pinless exited $rc"; return 1; fi
  grep -q 'PINLESS-TEST edu PASS' "$out" || { echo "guest edu test did not pass"; return 1; }
  grep -q "^edu-test: $n of $n devices ok" "$out" || { echo "want 'edu-test: $n of $n devices ok'"; return 1; }
  local good
  good=$(grep -E '^edu-test: [0-9a-f:.]+ ok: .*verified.*; msi [0-9]+ ' "$out" |
    awk '{ for (i = 1; i < NF; i++) if ($i == "msi" && $(i + 1) >= 10) { print $2; break } }' | sort -u | wc -l)
  [ "$good" = "$n" ] || { echo "$good of $n devices with verified DMA and >= 10 MSIs"; return 1; }
}

# Largest VmLck+VmPin (kB) sampled during a run.
vfio_max_pinned_kb() {
  awk '{ s = 0; for (i = 1; i < NF; i++) if ($i == "VmLck:" || $i == "VmPin:") s += $(i + 1); if (s > m) m = s }
       END { print m + 0 }' "$IT_LOG/$1.pin"
}

# vfio_released NAME: pinless's last word on DMA says nothing stayed pinned (all mappings
# unmapped, VmPin and VmLck of the process back to 0) after the devices were closed.
VFIO_RELEASED='dma: released all mappings: pinned 0 B, VmPin 0 kB, VmLck 0 kB'
vfio_released() {
  local name=$1
  if grep -qF "$VFIO_RELEASED" "$IT_LOG/$name.err"; then
    it_pass "vfio-unpinned-${name#vfio-edu-}" "$VFIO_RELEASED"
  else
    local got; got=$(grep -m1 'dma: released' "$IT_LOG/$name.err")
    it_fail "vfio-unpinned-${name#vfio-edu-}" "want '$VFIO_RELEASED', got '${got:-no such line}'"
  fi
}

# vfio_expect_error NAME PATTERN... -- pinless-args...: pinless (prefixed by VFIO_WRAP) must
# exit 1 with every PATTERN (fixed strings) on stderr.
vfio_expect_error() {
  local name=$1 patterns=() p; shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do patterns+=("$1"); shift; done
  shift
  it_run "$name" timeout 60 "${VFIO_WRAP[@]}" "$PINLESS" run --kernel "$L2_KERNEL" --initrd "$INITRD" \
    --memory size=128M --cmdline "$BASE_CMDLINE pinless.test=boot" "$@"
  local rc=$?
  if [ "$rc" != 1 ]; then it_fail "$name" "pinless exited $rc, want 1"; it_show "$name"; return 1; fi
  for p in "${patterns[@]}"; do
    if ! grep -qF -- "$p" "$IT_LOG/$name.err"; then
      it_fail "$name" "stderr lacks '$p'"; it_show "$name"; return 1
    fi
  done
  it_pass "$name" "$(head -1 "$IT_LOG/$name.err" | cut -c1-400)"
}

# vfio_wait_opened NAME: waits (30 s at most) until the pinless of run NAME has opened its
# devices, i.e. holds them.
vfio_wait_opened() {
  local i
  for i in $(seq 300); do
    grep -q ': opened (' "$IT_LOG/$1.err" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# One backend: the edu test, timeline, pinned while running, released after, a second run.
vfio_single() {
  local b=$1 bdf=$2 rc pinned msg
  vfio_guest "vfio-edu-$b" "$b" "$bdf"; rc=$?
  if ! msg=$(vfio_edu_ok "vfio-edu-$b" "$rc" 1); then
    it_fail "vfio-edu-$b" "$msg"; it_show "vfio-edu-$b"; return
  fi
  it_pass "vfio-edu-$b" "$(grep -m1 'edu-test: .* ok' "$IT_LOG/vfio-edu-$b.out" | cut -c1-160)"
  # Phases in the timeline: pin_region (bytes, ms), vfio_reset, vfio_bars.
  if python3 - "$IT_LOG/vfio-edu-$b.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ph = {}
for p in d.get("phases", []):
    ph.setdefault(p["name"], []).append(p)
need = ["pin_region", "vfio_reset", "vfio_bars"]
miss = [n for n in need if n not in ph]
if miss:
    sys.exit("missing phases: " + ", ".join(miss))
pinned = sum(int(p["attrs"]["bytes"]) for p in ph["pin_region"])
if pinned < 200 * 1024 * 1024:
    sys.exit(f"pin_region bytes {pinned} < 200 MiB")
print(f"pinned {pinned >> 20} MiB in {sum(float(p['attrs']['ms']) for p in ph['pin_region']):.1f} ms")
PY
  then it_pass "vfio-timeline-$b"; else it_fail "vfio-timeline-$b" "timeline phases"; fi
  pinned=$(vfio_max_pinned_kb "vfio-edu-$b")
  if [ "$pinned" -ge $((200 * 1024)) ]; then
    it_pass "vfio-pinned-$b" "max VmLck+VmPin while running: $pinned kB"
  else
    it_fail "vfio-pinned-$b" "max VmLck+VmPin while running: $pinned kB (want >= 200 MiB)"
  fi
  # Teardown unpins everything (pinless's own report, read from /proc/self/status at the end).
  vfio_released "vfio-edu-$b"
  # Everything released: the same device opens again at once (a leftover binding, group
  # in use or IOAS mapping would make this fail).
  vfio_guest "vfio-edu-$b-again" "$b" "$bdf"; rc=$?
  if msg=$(vfio_edu_ok "vfio-edu-$b-again" "$rc" 1); then
    it_pass "vfio-release-$b" "second run with the same device passed"
  else
    it_fail "vfio-release-$b" "second run: $msg"; it_show "vfio-edu-$b-again"
  fi
}

# One guest, every edu device: DMA and MSIs verified on each.
vfio_two_devices() {
  local b=$1 rc msg; shift
  vfio_guest "vfio-2dev-$b" "$b" "$@"; rc=$?
  if msg=$(vfio_edu_ok "vfio-2dev-$b" "$rc" "$#"); then
    it_pass "vfio-2dev-$b" "$(grep -E '^edu-test: [0-9a-f:.]+ ok' "$IT_LOG/vfio-2dev-$b.out" |
      sed -E 's/^edu-test: ([0-9a-f:.]+) ok: .*verified.*; msi ([0-9]+) .*/\1 dma ok, \2 msi/' | paste -sd\; -)"
  else
    it_fail "vfio-2dev-$b" "$msg"; it_show "vfio-2dev-$b"
  fi
}

# Two guests at once, one device each; while they run, a third pinless asks for the first
# one's device (same backend, then the other backend) and must be refused with the cause.
vfio_two_guests() {
  local b=$1 other=$2 A=$3 B=$4 pa pb ra rb msg msgb
  vfio_guest "vfio-pair-$b-a" "$b" "$A" & pa=$!
  vfio_guest "vfio-pair-$b-b" "$b" "$B" & pb=$!
  if vfio_wait_opened "vfio-pair-$b-a"; then
    vfio_expect_error "vfio-err-in-use-$b" "$A: in use by another process/VM" "pinless" \
      -- --device "vfio,host=$A" --iommu-backend "$b"
    [ -n "$other" ] && vfio_expect_error "vfio-err-in-use-$b-by-$other" "$A: in use by another process/VM" \
      -- --device "vfio,host=$A" --iommu-backend "$other"
    # The refused attempts happened while the owner ran (else they proved nothing).
    kill -0 "$pa" 2>/dev/null || it_fail "vfio-err-in-use-$b" "the first guest had already ended: no overlap"
  else
    it_fail "vfio-err-in-use-$b" "the first guest never opened $A"
  fi
  wait "$pa"; ra=$?
  wait "$pb"; rb=$?
  msg=$(vfio_edu_ok "vfio-pair-$b-a" "$ra" 1); local oka=$?
  msgb=$(vfio_edu_ok "vfio-pair-$b-b" "$rb" 1); local okb=$?
  if [ $oka = 0 ] && [ $okb = 0 ]; then
    it_pass "vfio-two-guests-$b" "$A and $B in two VMs at once, both edu tests passed"
  else
    it_fail "vfio-two-guests-$b" "guest a: ${msg:-ok}; guest b: ${msgb:-ok}"
    it_show "vfio-pair-$b-a"; it_show "vfio-pair-$b-b"
  fi
}

# Pinning without CAP_IPC_LOCK under a small RLIMIT_MEMLOCK: refused with what to raise, by
# how much. Then the accounting model: two such VMs whose RAM each fits the limit but not
# together: type1 charges each process (both run), iommufd charges the user by default
# (IOMMU_OPTION_RLIMIT_MODE 0; the second is refused).
VFIO_NOLOCK=(setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock)
vfio_memlock() {
  local b=$1 A=$2 B=$3
  if ! command -v setpriv >/dev/null || ! command -v prlimit >/dev/null; then
    it_fail "vfio-err-memlock-$b" "setpriv/prlimit (util-linux) missing"; return
  fi
  VFIO_WRAP=(prlimit --memlock=$((16 << 20)):$((16 << 20)) "${VFIO_NOLOCK[@]}")
  vfio_expect_error "vfio-err-memlock-$b" "RLIMIT_MEMLOCK" "needs RLIMIT_MEMLOCK >= 128M" "limit now 16M" \
    "ulimit -l 131072" "LimitMEMLOCK=" "CAP_IPC_LOCK" -- --device "vfio,host=$A" --iommu-backend "$b"
  [ -z "$B" ] && { VFIO_WRAP=(); return; }

  # 192 MiB limit, 128 MiB guests, no CAP_IPC_LOCK.
  VFIO_WRAP=(prlimit --memlock=$((192 << 20)):$((192 << 20)) "${VFIO_NOLOCK[@]}")
  local pa ra
  VFIO_MEM=128M VFIO_TEST=boot vfio_guest "vfio-memlock-$b-a" "$b" "$A" & pa=$!
  if ! vfio_wait_opened "vfio-memlock-$b-a" || ! { sleep 1.5; kill -0 "$pa" 2>/dev/null; }; then
    it_fail "vfio-memlock-accounting-$b" "first VM (128M under a 192M limit) did not start"; it_show "vfio-memlock-$b-a"
    wait "$pa"; VFIO_WRAP=(); return
  fi
  if [ "$b" = iommufd ]; then
    vfio_expect_error "vfio-memlock-accounting-$b" "fits RLIMIT_MEMLOCK (192M) on its own" "charges pinned pages per user" \
      -- --device "vfio,host=$B" --iommu-backend "$b"
  else
    VFIO_MEM=128M VFIO_TEST=boot vfio_guest "vfio-memlock-$b-b" "$b" "$B"
    if [ $? = 0 ]; then
      it_pass "vfio-memlock-accounting-$b" "two 128M VMs under a 192M RLIMIT_MEMLOCK each: charged per process"
    else
      it_fail "vfio-memlock-accounting-$b" "second 128M VM under a 192M limit failed (per-process accounting expected)"
      it_show "vfio-memlock-$b-b"
    fi
  fi
  wait "$pa"; ra=$?
  [ "$ra" = 0 ] || { it_fail "vfio-memlock-fits-$b" "128M VM under a 192M limit exited $ra"; it_show "vfio-memlock-$b-a"; }
  [ "$ra" = 0 ] && it_pass "vfio-memlock-fits-$b" "128M VM without CAP_IPC_LOCK under a 192M limit ran"
  VFIO_WRAP=()
}

# A non-viable IOMMU group, for real: a group that holds a device bound to a host driver and
# a free (driverless, non-bridge) device. In the testbed's q35 that is group 00:1f.* on the
# iommufd kernel (00:1f.3 on i801_smbus, 00:1f.2 AHCI without a driver; the stock kernel
# loads no driver there, so it has no such group). Binds the free one to vfio-pci, expects
# pinless to name the other device and its driver on every backend, then unbinds it again.
vfio_not_viable() {
  local g d b drv cand="" blocker=""
  for g in /sys/kernel/iommu_groups/*; do
    cand="" blocker=""
    for d in "$g"/devices/*; do
      drv=$(basename "$(readlink "$d/driver" 2>/dev/null)" 2>/dev/null)
      case "$drv" in
        "") case "$(cat "$d/class")" in 0x06*) ;; *) [ -z "$cand" ] && cand=$(basename "$d") ;; esac ;;
        *vfio*|pci-stub|pcieport) ;;
        *) blocker="$(basename "$d") is bound to host driver $drv" ;;
      esac
    done
    [ -n "$cand" ] && [ -n "$blocker" ] && break
    cand=""
  done
  if [ -z "$cand" ]; then
    echo "== vfio: no IOMMU group here mixes a host-driver device with a free one: the not-viable check runs on the iommufd kernel"
    return
  fi
  local dev=/sys/bus/pci/devices/$cand
  echo vfio-pci >"$dev/driver_override"
  echo "$cand" >/sys/bus/pci/drivers_probe
  if [ "$(basename "$(readlink "$dev/driver")")" != vfio-pci ]; then
    it_fail vfio-err-not-viable "cannot bind $cand to vfio-pci for the check"
  else
    for b in "$@"; do
      vfio_expect_error "vfio-err-not-viable-$b" "$cand: IOMMU group $(basename "$g") is not viable: $blocker" \
        "/driver/unbind" -- --device "vfio,host=$cand" --iommu-backend "$b"
    done
    echo "$cand" >"$dev/driver/unbind"
  fi
  echo >"$dev/driver_override"
}

# No IOMMU in the host (testbed --iommu none): vfio-pci cannot bind, and pinless must name
# the missing IOMMU as the cause, not the driver.
vfio_no_iommu() {
  local bdf=$1
  echo "== vfio: no IOMMU groups in this host: only the no-IOMMU error is checked"
  vfio_expect_error vfio-err-no-iommu "$bdf has no IOMMU group: this host has no IOMMU enabled" \
    "firmware (BIOS/UEFI)" "intel_iommu=on" -- --device "vfio,host=$bdf"
}

# vfio_rom BACKEND BDF: the testbed gives its last edu an expansion ROM (romfile=); the guest
# reads it back through sysfs `rom` (ROM BAR emulation + reads of VFIO's ROM region).
vfio_rom() {
  local b=$1 bdf=$2 rc
  if [ ! -r "/sys/bus/pci/devices/$bdf/rom" ]; then
    it_fail "vfio-rom-$b" "$bdf has no expansion ROM in L1 (scripts/testbed gives the last edu one)"; return
  fi
  VFIO_TEST=rom vfio_guest "vfio-rom-$b" "$b" "$bdf"; rc=$?
  if [ "$rc" = 0 ] && grep -q 'marker found' "$IT_LOG/vfio-rom-$b.out"; then
    it_pass "vfio-rom-$b" "$(grep -m1 '^rom: ' "$IT_LOG/vfio-rom-$b.out")"
  else
    it_fail "vfio-rom-$b" "pinless exited $rc"; it_show "vfio-rom-$b"
  fi
}

vfio_tests() {
  local bdfs=(${PINLESS_EDU_BDFS:-})
  if [ "${#bdfs[@]}" = 0 ]; then it_fail vfio-prerequisites "no edu devices (PINLESS_EDU_BDFS empty; --edu 2)"; return; fi
  for f in "$PINLESS" "$INITRD" "$L2_KERNEL"; do
    [ -e "$f" ] || { it_fail vfio-prerequisites "missing $f"; return; }
  done
  echo "== vfio: $PINLESS, edu [${bdfs[*]}]"
  local bdf=${bdfs[0]} bdf2=${bdfs[1]:-} backends=()
  if [ -z "$(ls /sys/kernel/iommu_groups 2>/dev/null)" ]; then vfio_no_iommu "$bdf"; return; fi
  [ -e /dev/iommu ] && backends+=(iommufd)
  [ -e /dev/vfio/vfio ] && backends+=(type1)
  [ "${#backends[@]}" -gt 0 ] || { it_fail vfio-prerequisites "neither /dev/iommu nor /dev/vfio/vfio"; return; }
  [ -n "$bdf2" ] || it_fail vfio-prerequisites "one edu device only: the two-device checks need --edu 2"

  local b o other
  for b in "${backends[@]}"; do
    other=""
    for o in "${backends[@]}"; do [ "$o" = "$b" ] || other=$o; done
    vfio_single "$b" "$bdf"
    if [ -n "$bdf2" ]; then
      vfio_two_devices "$b" "${bdfs[@]}"
      vfio_two_guests "$b" "$other" "$bdf" "$bdf2"
    fi
    vfio_memlock "$b" "$bdf" "$bdf2"
    vfio_rom "$b" "${bdfs[${#bdfs[@]}-1]}"
  done

  vfio_not_viable "${backends[@]}"
  vfio_expect_error vfio-err-nonexistent "no such PCI device" -- --device vfio,host=0000:00:1f.6
  # Forced backend that this kernel lacks.
  if [ ! -e /dev/iommu ]; then
    vfio_expect_error vfio-err-no-iommufd "iommufd" -- --device "vfio,host=$bdf" --iommu-backend iommufd
  elif [ ! -e /dev/vfio/vfio ]; then
    vfio_expect_error vfio-err-no-type1 "type1" -- --device "vfio,host=$bdf" --iommu-backend type1
  else
    vfio_expect_error vfio-err-bad-iommufd-fd "iommufd" -- --device "vfio,host=$bdf" --iommufd-fd 77
  fi
  # A device not bound to vfio-pci: unbind the last edu, expect the bind commands, rebind.
  local last=${bdfs[${#bdfs[@]}-1]}
  if [ -w "/sys/bus/pci/devices/$last/driver/unbind" ]; then
    echo "$last" >"/sys/bus/pci/devices/$last/driver/unbind"
    vfio_expect_error vfio-err-unbound \
      "echo vfio-pci > /sys/bus/pci/devices/$last/driver_override; echo $last > /sys/bus/pci/drivers_probe" \
      -- --device "vfio,host=$last"
    echo vfio-pci >"/sys/bus/pci/devices/$last/driver_override"
    echo "$last" >/sys/bus/pci/drivers_probe
  else
    it_fail vfio-err-unbound "$last is not bound to any driver to begin with"
  fi

  # After all of it: every edu back on vfio-pci, no VFIO node held by anyone, and a last
  # run with every device still passes (the devices were left quiet and reusable).
  local d bad="" holders rc msg
  for d in "${bdfs[@]}"; do
    [ "$(basename "$(readlink "/sys/bus/pci/devices/$d/driver")")" = vfio-pci ] || bad+=" $d"
  done
  holders=$(ls -l /proc/[0-9]*/fd 2>/dev/null | grep -c ' -> /dev/vfio/')
  vfio_guest vfio-final "${backends[0]}" "${bdfs[@]}"; rc=$?
  if [ -n "$bad" ]; then
    it_fail vfio-teardown "not bound to vfio-pci any more:$bad"
  elif [ "$holders" != 0 ]; then
    it_fail vfio-teardown "$holders open fds on /dev/vfio/* after every pinless exited"
  elif ! msg=$(vfio_edu_ok vfio-final "$rc" "${#bdfs[@]}"); then
    it_fail vfio-teardown "final run with all devices: $msg"; it_show vfio-final
  else
    it_pass vfio-teardown "all edus on vfio-pci, no /dev/vfio fd left open, final run with ${#bdfs[@]} device(s) passed"
  fi
}

vfio_tests
if [ "${VFIO_STANDALONE:-0}" = 1 ]; then it_summary; fi
