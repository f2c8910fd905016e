#!/usr/bin/env bash
# The virtio-iommu on real kernels (sourced by all.sh after vfio.sh; also runs standalone:
#   scripts/testbed run --kernel iommufd --edu 2 -- tests/integration/viommu.sh iommufd).
# pinless --viommu puts the first edu device behind a virtio-iommu whose guest domains are
# iommufd IOASes filled by IOAS_COPY (docs/virtio-iommu.md). Three guests:
#   bypass      iommu.passthrough=1: the guest attaches the device to an identity domain and
#               edu-test's DMA to guest-physical addresses works;
#   translated  the guest's default DMA domain, empty: edu-test's DMA to guest-physical
#               addresses must NOT arrive (the host IOMMU really follows the guest's domain);
#   vfio        vfio-edu, a VFIO driver in the guest, maps its own IOVAs (guest MAP/UNMAP ->
#               host IOAS_COPY/UNMAP) and its DMA through them arrives.
# Each: the timeline's "viommu" counters (every request answered OK) and nothing left pinned.
# On a kernel without VFIO cdevs (stock 6.1) pinless must say why --viommu cannot work.
if [ -z "${IT_PASSED+x}" ]; then  # standalone
  set -uo pipefail
  source "$(dirname "${BASH_SOURCE[0]}")/env.sh" "${1:-host}"
  VIOMMU_STANDALONE=1
fi

# viommu_guest NAME TEST CMDLINE-EXTRA: pinless --viommu with the first edu device, the guest
# running TEST. Returns pinless's exit status.
viommu_guest() {
  local name=$1 test=$2 extra=$3 bdf=${PINLESS_EDU_BDFS%% *}
  timeout 120 "$PINLESS" run --kernel "$L2_KERNEL" --initrd "$INITRD" --memory size=256M --viommu \
    --device "vfio,host=$bdf" --cmdline "$BASE_CMDLINE pinless.test=$test $extra" \
    --timeline="$IT_LOG/$name.json" --log-level info </dev/null >"$IT_LOG/$name.out" 2>"$IT_LOG/$name.err"
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
print(f"requests {r}, all OK; {v['ioeventfd_notifies']} notifications by ioeventfd")
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
      it_pass viommu-no-cdev "$(head -1 "$IT_LOG/viommu-no-cdev.err" | cut -c1-300)"
    else
      it_fail viommu-no-cdev "pinless exited $rc; want 1 naming the missing VFIO cdev / iommufd"
      it_show viommu-no-cdev
    fi
    return
  fi

  # NAME TEST EXTRA-CMDLINE WANT-RC PATTERN (in the guest's output) MIN-ATTACH MIN-MAP MIN-UNMAP WHAT
  local name test extra want pattern attach map unmap what
  while IFS='|' read -r name test extra want pattern attach map unmap what; do
    viommu_guest "$name" "$test" "$extra"; rc=$?
    if [ "$rc" = "$want" ] && grep -q "$pattern" "$IT_LOG/$name.out"; then
      it_pass "$name" "$(grep -m1 "$pattern" "$IT_LOG/$name.out" | cut -c1-200)"
      viommu_counters "$name" "$attach" "$map" "$unmap"
    else
      it_fail "$name" "pinless exited $rc; want $want and $what"
      it_show "$name"
    fi
  done <<'CASES'
viommu-bypass|edu|iommu.passthrough=1|0|^edu-test: 1 of 1 devices ok|1|0|0|the guest's edu test passing in bypass
viommu-translated|edu||1|DMA data mismatch|1|0|0|edu DMA to guest-physical addresses not arriving (empty guest domain)
viommu-vfio|viommu|vfio_iommu_type1.allow_unsafe_interrupts=1|0|^vfio-edu: .* ok|1|1|1|vfio-edu in the guest passing
CASES
}

viommu_tests
if [ "${VIOMMU_STANDALONE:-0}" = 1 ]; then it_summary; fi
