#!/usr/bin/env bash
# VFIO passthrough on real kernels (sourced by all.sh after vmm_boot.sh; also runs standalone:
#   scripts/testbed run --kernel iommufd --edu 2 -- tests/integration/vfio.sh iommufd).
# Boots the L2 test guest with an edu device passed through and its `edu` test (DMA RAM ->
# device -> RAM, MSIs), with each DMA backend the L1 kernel offers; checks that guest RAM is
# pinned while the VM runs and released after it (a second run of the same device works),
# and the error messages for a nonexistent BDF, a device not bound to vfio-pci and a forced
# backend that is not available.
if [ -z "${IT_PASSED+x}" ]; then  # standalone
  set -uo pipefail
  HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  REPO=$(cd "$HERE/../.." && pwd)
  KIND=${1:-host}
  BUILD=${PINLESS_BUILD:-$REPO/build}
  source "$HERE/lib.sh"
  source "$REPO/scripts/testbed.d/common.sh"
  source "$REPO/scripts/testbed.d/kernels.sh"
  PINLESS=${PINLESS:-$BUILD/pinless}
  INITRD=${INITRD:-$BUILD/guest-images/initrd.cpio.gz}
  L2_KERNEL=${L2_KERNEL:-$(tb_kernel_dir iommufd)/bzImage}
  BASE_CMDLINE="console=ttyS0 reboot=k panic=-1 quiet"
  [ "${PINLESS_TESTBED:-0}" = 1 ] && BASE_CMDLINE+=" noxsave"
  VFIO_STANDALONE=1
fi

# vfio_guest NAME BDF BACKEND: boots the edu test with BDF passed through; samples VmLck and
# VmPin of the running pinless into $IT_LOG/NAME.pin. Returns pinless's exit status.
vfio_guest() {
  local name=$1 bdf=$2 backend=$3 pid rc
  : >"$IT_LOG/$name.pin"
  timeout 120 "$PINLESS" run --kernel "$L2_KERNEL" --initrd "$INITRD" --memory size=256M \
    --cmdline "$BASE_CMDLINE pinless.test=edu" --timeline="$IT_LOG/$name.json" --log-level info \
    --device "vfio,host=$bdf" --iommu-backend "$backend" >"$IT_LOG/$name.out" 2>"$IT_LOG/$name.err" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    # $pid is `timeout`; pinless is its child.
    local cpid; cpid=$(pgrep -P "$pid" | head -1)
    [ -n "$cpid" ] && grep -E '^(VmLck|VmPin):' "/proc/$cpid/status" 2>/dev/null | tr '\n' ' ' >>"$IT_LOG/$name.pin"
    echo >>"$IT_LOG/$name.pin"
    sleep 0.3
  done
  wait "$pid"
}

# Largest VmLck+VmPin (kB) sampled during a run.
vfio_max_pinned_kb() {
  awk '{ s = 0; for (i = 1; i < NF; i++) if ($i == "VmLck:" || $i == "VmPin:") s += $(i + 1); if (s > m) m = s }
       END { print m + 0 }' "$IT_LOG/$1.pin"
}

# vfio_expect_error NAME PATTERN pinless-args...: pinless must exit 1 with PATTERN on stderr.
vfio_expect_error() {
  local name=$1 pattern=$2; shift 2
  it_run "$name" timeout 60 "$PINLESS" run --kernel "$L2_KERNEL" --initrd "$INITRD" --memory size=128M \
    --cmdline "$BASE_CMDLINE pinless.test=boot" "$@"
  local rc=$?
  if [ "$rc" != 1 ]; then it_fail "$name" "pinless exited $rc, want 1"; it_show "$name"; return; fi
  if grep -qF -- "$pattern" "$IT_LOG/$name.err"; then
    it_pass "$name" "$(head -c 300 "$IT_LOG/$name.err" | head -1)"
  else
    it_fail "$name" "stderr lacks '$pattern'"; it_show "$name"
  fi
}

vfio_tests() {
  local bdfs=(${PINLESS_EDU_BDFS:-})
  if [ "${#bdfs[@]}" = 0 ]; then it_fail vfio-prerequisites "no edu devices (PINLESS_EDU_BDFS empty; --edu 2)"; return; fi
  for f in "$PINLESS" "$INITRD" "$L2_KERNEL"; do
    [ -e "$f" ] || { it_fail vfio-prerequisites "missing $f"; return; }
  done
  echo "== vfio: $PINLESS, edu [${bdfs[*]}]"
  local bdf=${bdfs[0]} backends=()
  [ -e /dev/iommu ] && backends+=(iommufd)
  [ -e /dev/vfio/vfio ] && backends+=(type1)
  [ "${#backends[@]}" -gt 0 ] || { it_fail vfio-prerequisites "neither /dev/iommu nor /dev/vfio/vfio"; return; }

  local b rc pinned
  for b in "${backends[@]}"; do
    vfio_guest "vfio-edu-$b" "$bdf" "$b"; rc=$?
    if [ "$rc" != 0 ] || ! grep -q 'PINLESS-TEST edu PASS' "$IT_LOG/vfio-edu-$b.out"; then
      it_fail "vfio-edu-$b" "pinless exited $rc, guest edu test did not pass"; it_show "vfio-edu-$b"
      grep -h 'edu-test' "$IT_LOG/vfio-edu-$b.out" | tail -3
      continue
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
print(f"pinned {pinned >> 20} MiB in {sum(int(p['attrs']['ms']) for p in ph['pin_region'])} ms")
PY
    then it_pass "vfio-timeline-$b"; else it_fail "vfio-timeline-$b" "timeline phases"; fi
    pinned=$(vfio_max_pinned_kb "vfio-edu-$b")
    if [ "$pinned" -ge $((200 * 1024)) ]; then
      it_pass "vfio-pinned-$b" "max VmLck+VmPin while running: $pinned kB"
    else
      it_fail "vfio-pinned-$b" "max VmLck+VmPin while running: $pinned kB (want >= 200 MiB)"
    fi
    # Everything released: the same device opens again at once (a leftover binding, group
    # in use or IOAS mapping would make this fail).
    vfio_guest "vfio-edu-$b-again" "$bdf" "$b"; rc=$?
    if [ "$rc" = 0 ] && grep -q 'PINLESS-TEST edu PASS' "$IT_LOG/vfio-edu-$b-again.out"; then
      it_pass "vfio-release-$b" "second run with the same device passed"
    else
      it_fail "vfio-release-$b" "second run exited $rc"; it_show "vfio-edu-$b-again"
    fi
  done

  vfio_expect_error vfio-err-nonexistent "no such PCI device" --device vfio,host=0000:00:1f.6
  # Forced backend that this kernel lacks.
  if [ ! -e /dev/iommu ]; then
    vfio_expect_error vfio-err-no-iommufd "iommufd" --device "vfio,host=$bdf" --iommu-backend iommufd
  elif [ ! -e /dev/vfio/vfio ]; then
    vfio_expect_error vfio-err-no-type1 "type1" --device "vfio,host=$bdf" --iommu-backend type1
  else
    vfio_expect_error vfio-err-bad-iommufd-fd "iommufd" --device "vfio,host=$bdf" --iommufd-fd 77
  fi
  # A device not bound to vfio-pci: unbind the last edu, expect the bind commands, rebind.
  local other=${bdfs[${#bdfs[@]}-1]}
  if [ -w "/sys/bus/pci/devices/$other/driver/unbind" ]; then
    echo "$other" >"/sys/bus/pci/devices/$other/driver/unbind"
    vfio_expect_error vfio-err-unbound \
      "echo vfio-pci > /sys/bus/pci/devices/$other/driver_override; echo $other > /sys/bus/pci/drivers_probe" \
      --device "vfio,host=$other"
    echo vfio-pci >"/sys/bus/pci/devices/$other/driver_override"
    echo "$other" >/sys/bus/pci/drivers_probe
    [ "$(basename "$(readlink "/sys/bus/pci/devices/$other/driver")")" = vfio-pci ] ||
      it_fail vfio-rebind "$other not back on vfio-pci"
  else
    it_fail vfio-err-unbound "$other is not bound to any driver to begin with"
  fi
}

vfio_tests
if [ "${VFIO_STANDALONE:-0}" = 1 ]; then it_summary; fi
