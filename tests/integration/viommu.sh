#!/usr/bin/env bash
# The virtio-iommu on real kernels (sourced by all.sh after vfio.sh; also runs standalone:
#   scripts/testbed run --kernel iommufd --edu 2 -- tests/integration/viommu.sh iommufd).
# pinless --viommu puts the first edu device behind a virtio-iommu whose guest domains are
# iommufd IOASes filled by IOAS_COPY (docs/viommu.md). Three guests:
#   bypass      iommu.passthrough=1: the guest attaches the device to an identity domain and
#               edu-test's DMA to guest-physical addresses works;
#   translated  the guest's default DMA domain, empty: edu-test's DMA to guest-physical
#               addresses must NOT arrive (the host IOMMU really follows the guest's domain);
#   vfio        vfio-edu, a VFIO driver in the guest, maps its own IOVAs (guest MAP/UNMAP ->
#               host IOAS_COPY/UNMAP) and its DMA through them arrives.
# Each: the timeline's "viommu" counters (every request answered OK) and nothing left pinned.
# Then pinless's VmPin with an idle guest up: all guest RAM in bypass, (almost) nothing with
# the device in the guest's empty DMA domain.
# On a kernel without VFIO cdevs (stock 6.1) pinless must say why --viommu cannot work.
if [ -z "${IT_PASSED+x}" ]; then  # standalone
  set -uo pipefail
  source "$(dirname "${BASH_SOURCE[0]}")/env.sh" "${1:-host}"
  VIOMMU_STANDALONE=1
fi

# viommu_guest NAME TEST CMDLINE-EXTRA [BDF...]: pinless --viommu with those edu devices (the
# first one if none is named), the guest running TEST. Samples pinless's VmPin every 0.2 s into $IT_LOG/NAME.pin as "PHASE kB", PHASE
# counting the vfio-edu markers seen so far ("ready to map" 1, "mapped" 2, "shared" 3 (two
# devices only), "unmapped" 4).
# Returns pinless's exit status.
viommu_guest() {
  local name=$1 test=$2 extra=$3 devs=() d pid cpid phase
  shift 3
  for d in "${@:-${PINLESS_EDU_BDFS%% *}}"; do devs+=(--device "vfio,host=$d"); done
  : >"$IT_LOG/$name.pin"
  timeout 120 "$PINLESS" run --kernel "$L2_KERNEL" --initrd "$INITRD" --memory size=256M --viommu \
    "${devs[@]}" --cmdline "$BASE_CMDLINE pinless.test=$test $extra" \
    --timeline="$IT_LOG/$name.json" --log-level info </dev/null >"$IT_LOG/$name.out" 2>"$IT_LOG/$name.err" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    cpid=$(pgrep -P "$pid" | head -1)  # $pid is timeout; pinless is its child
    phase=$(grep -cE '^vfio-edu: (ready to map|mapped|shared|unmapped)' "$IT_LOG/$name.out" 2>/dev/null)
    [ -n "$cpid" ] && awk -v p="${phase:-0}" '/^VmPin:/ {print p, $2}' "/proc/$cpid/status" 2>/dev/null >>"$IT_LOG/$name.pin"
    sleep 0.2
  done
  wait "$pid"
}

# viommu_counters NAME MIN-ATTACH MIN-MAP MIN-UNMAP: the timeline's viommu section shows at
# least that many requests, every one answered OK, and pinless released every pin at exit.
viommu_counters() {
  local name=$1 msg
  if ! msg=$(python3 - "$IT_LOG/$name.json" "$2" "$3" "$4" <<'PY'
import json, sys
v = json.load(open(sys.argv[1])).get("viommu")
if v is None:
    sys.exit("no viommu section in the timeline")
r, s = v["requests"], v["statuses"]
want = dict(zip(("attach", "map", "unmap"), map(int, sys.argv[2:5])))
short = [f"{k} {r[k]} < {n}" for k, n in want.items() if r[k] < n]
if short:
    sys.exit("requests: " + ", ".join(short) + f" ({r})")
total = sum(r.values())
if s["ok"] != total or v["dropped"] or v["refused_chains"]:
    sys.exit(f"{total} requests but statuses {s}, dropped {v['dropped']}, refused {v['refused_chains']}")
h = v["host"]
if h["ioas_copies"] != r["map"]:
    sys.exit(f"{r['map']} MAP requests answered OK but {h['ioas_copies']} IOAS_COPY calls")
print(f"requests {r}, all OK; host: {h['ioas_copies']} IOAS_COPY in {h['copy_us']} us, "
      f"{h['ioas_unmaps']} IOAS_UNMAP in {h['unmap_us']} us, peak {h['peak_mapped_bytes']} bytes mapped in guest domains")
PY
  ); then
    it_fail "$name-counters" "$msg"; return 1
  fi
  it_pass "$name-counters" "$msg"
  if grep -qF "$VFIO_RELEASED" "$IT_LOG/$name.err"; then
    it_pass "$name-unpinned" "$VFIO_RELEASED"
  else
    it_fail "$name-unpinned" "want '$VFIO_RELEASED', got '$(grep -m1 'dma: released' "$IT_LOG/$name.err")'"
  fi
}

# viommu_idle_pin NAME EXTRA-CMDLINE: boots the idle guest, and once it is up prints the VmPin
# (kB) of pinless, then stops it with SIGTERM. Prints nothing if the guest never came up.
viommu_idle_pin() {
  local name=$1 extra=$2 bdf=${PINLESS_EDU_BDFS%% *} pid i pin=
  "$PINLESS" run --kernel "$L2_KERNEL" --initrd "$INITRD" --memory size=256M --viommu --device "vfio,host=$bdf" \
    --cmdline "$BASE_CMDLINE pinless.test=idle $extra" --log-level info </dev/null >"$IT_LOG/$name.out" 2>"$IT_LOG/$name.err" &
  pid=$!
  for i in $(seq 600); do
    grep -q 'idle: up' "$IT_LOG/$name.out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if grep -q 'idle: up' "$IT_LOG/$name.out"; then
    sleep 1  # the guest's driver attached its endpoints before init ran; let the kernel settle
    pin=$(awk '/^VmPin:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
  fi
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null && echo "$name: pinless still ran 30 s after SIGTERM; killed" >>"$IT_LOG/$name.err"
  wait "$pid"
  echo "$pin"
}

viommu_tests() {
  local rc
  VFIO_RELEASED=${VFIO_RELEASED:-'dma: released all mappings: pinned 0 B, VmPin 0 kB, VmLck 0 kB'}
  if [ -z "${PINLESS_EDU_BDFS:-}" ] || [ ! -d /sys/kernel/iommu_groups/0 ]; then
    echo "SKIP viommu: no edu device behind an IOMMU here"
    return
  fi
  echo "== viommu: $PINLESS --viommu with ${PINLESS_EDU_BDFS%% *}"
  if [ "$KIND" != iommufd ]; then
    # No VFIO cdev on this kernel: the guest's domains cannot be IOASes.
    viommu_guest viommu-no-cdev boot ""; rc=$?
    if [ "$rc" = 1 ] && grep -qE "no VFIO cdev|iommufd" "$IT_LOG/viommu-no-cdev.err"; then
      it_pass viommu-no-cdev "$(grep -m1 -E "no VFIO cdev|iommufd" "$IT_LOG/viommu-no-cdev.err" | cut -c1-300)"
    else
      it_fail viommu-no-cdev "pinless exited $rc; want 1 naming the missing VFIO cdev / iommufd"
      it_show viommu-no-cdev
    fi
    return
  fi

  # NAME TEST EXTRA-CMDLINE DEVICES (first|all) WANT-RC PATTERN (in the guest's output)
  # MIN-ATTACH MIN-MAP MIN-UNMAP WHAT
  local name test extra devs want pattern attach map unmap what bdfs
  while IFS='|' read -r name test extra devs want pattern attach map unmap what; do
    bdfs=${PINLESS_EDU_BDFS%% *}
    [ "$devs" = all ] && bdfs=$PINLESS_EDU_BDFS
    # shellcheck disable=SC2086  # one word per BDF
    viommu_guest "$name" "$test" "$extra" $bdfs; rc=$?
    if [ "$rc" = "$want" ] && grep -q "$pattern" "$IT_LOG/$name.out"; then
      it_pass "$name" "$(grep -m1 "$pattern" "$IT_LOG/$name.out" | cut -c1-200)"
      viommu_counters "$name" "$attach" "$map" "$unmap"
    else
      it_fail "$name" "pinless exited $rc; want $want and $what"
      it_show "$name"
    fi
  done <<'CASES'
viommu-bypass|edu|iommu.passthrough=1|first|0|^edu-test: 1 of 1 devices ok|1|0|0|the guest's edu test passing in bypass
viommu-translated|edu||first|1|DMA data mismatch|1|0|0|edu DMA to guest-physical addresses not arriving (empty guest domain)
viommu-vfio|viommu|vfio_iommu_type1.allow_unsafe_interrupts=1|all|0|^vfio-edu: ok|1|1|1|vfio-edu in the guest passing
CASES

  # The vfio run: what its mappings pinned on the host. A: 16 MiB; B (a second edu): 64 KiB,
  # then A's 16 MiB again, which are already pinned.
  if [ -s "$IT_LOG/viommu-vfio.pin" ]; then
    local pins two=0 want
    [ "$(echo $PINLESS_EDU_BDFS | wc -w)" -ge 2 ] && two=1
    want=$((16384 + two * 64))
    # Before: the least while ready (the MAP may precede its marker by a sample); mapped and
    # shared: the most; after: the least in the 2 s after the UNMAPs (later, as the guest
    # shuts down, its driver puts the devices back in bypass, and all RAM is pinned again).
    pins=$(awk -v after=$((3 + two)) '{ if ($2 > max[$1]) max[$1] = $2; if (!($1 in min) || $2 < min[$1]) min[$1] = $2 }
                END { printf "%d %d %d %d", min[1], max[2], max[3], min[after] }' "$IT_LOG/viommu-vfio.pin")
    set -- $pins
    if [ "$(($2 - $1))" = "$want" ] && { [ "$two" = 0 ] || [ "$3" = "$2" ]; } && [ "$4" = "$1" ]; then
      it_pass viommu-vfio-pins "VmPin of pinless: $1 kB before the guest's MAPs, $2 kB mapped (+$(($2 - $1)) kB)$([ "$two" = 1 ] && echo ", $3 kB with A's 16 MiB also in B's domain"), $4 kB after the UNMAPs"
    else
      it_fail viommu-vfio-pins "VmPin: $1 kB before, $2 kB mapped (want +$want kB), $3 kB shared (want $2 with two devices), $4 kB after (want $1)"
    fi
  fi
  local fault
  fault=$(dmesg 2>/dev/null | grep -iE 'fault addr 0x0*3000000|iova 0x0*3000000' | tail -1)
  if [ -n "$fault" ]; then
    it_pass viommu-vfio-stray-dma "L1's IOMMU refused the DMA to the unmapped IOVA: ${fault#*] }"
  else
    it_fail viommu-vfio-stray-dma "no IOMMU fault for IOVA 0x3000000 in L1's dmesg: $(dmesg | grep -iE 'DMAR|fault' | tail -2 | tr '\n' ' ')"
  fi

  # What stays pinned follows the guest's domains: in bypass the device sits on the VM's IOAS
  # with all guest RAM pinned; in the guest's (empty) DMA domain nothing of it needs to be.
  local bypass translated
  bypass=$(viommu_idle_pin viommu-pin-bypass "iommu.passthrough=1")
  translated=$(viommu_idle_pin viommu-pin-translated "")
  if [ -n "$bypass" ] && [ -n "$translated" ] && [ "$bypass" -ge $((256 * 1024 * 9 / 10)) ] &&
     [ "$translated" -lt $((bypass / 8)) ]; then
    it_pass viommu-pinned "VmPin of pinless with the guest up: ${bypass} kB with the device in bypass, ${translated} kB in the guest's empty DMA domain"
  else
    it_fail viommu-pinned "VmPin with the guest up: bypass '${bypass}' kB (want >= 90% of 256M), translated '${translated}' kB (want < 1/8 of that)"
    it_show viommu-pin-translated
  fi
  for name in viommu-pin-bypass viommu-pin-translated; do
    if grep -qF "$VFIO_RELEASED" "$IT_LOG/$name.err"; then it_pass "$name-unpinned" "after SIGTERM: $VFIO_RELEASED"
    else it_fail "$name-unpinned" "want '$VFIO_RELEASED' after SIGTERM"; it_show "$name"; fi
  done
}

viommu_tests
if [ "${VIOMMU_STANDALONE:-0}" = 1 ]; then it_summary; fi
