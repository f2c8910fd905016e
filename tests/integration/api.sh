#!/usr/bin/env bash
# The control API against real guests (sourced by all.sh; also runs standalone:
#   scripts/testbed run --kernel iommufd -- tests/integration/api.sh iommufd).
# A guest running the `ticker` test (a console line "ticker N" every 200 ms) is started with
# --api-socket and, where an edu device is bound to vfio-pci, that device; then, with curl
# and `pinless ctl`:
#   api-socket     the socket exists with mode 0600; a second pinless on it is refused
#   api-info       vm.info: pid, state, vCPUs, memory, the device with its guest BDF
#   api-counters   vm.counters agrees with the timeline pinless writes at exit (pinned bytes),
#                  and counts VM exits
#   api-timeline   vm.timeline has the startup events, first_kvm_run as in the exit timeline
#   api-pause      vm.pause stops the ticker, vm.resume restarts it
#   api-abuse      misbehaving clients for 8 s (api_abuse.py): every one gets an HTTP error,
#                  valid requests keep working, and the ticker keeps going meanwhile
#   api-shutdown   vm.shutdown: the guest sees the ACPI power button and powers off; pinless
#                  exits 0 with nothing pinned and the socket removed
#   api-stop       vm.stop on a second guest: pinless exits 0, socket removed
if [ -z "${IT_PASSED+x}" ]; then  # standalone
  set -uo pipefail
  source "$(dirname "${BASH_SOURCE[0]}")/env.sh" "${1:-host}"
  API_STANDALONE=1
fi

API_DIR=$(mktemp -d /tmp/pinless-api-test.XXXXXX)

# ticks NAME: the last ticker number the guest printed (0 if none).
ticks() { grep -aoE 'ticker [0-9]+' "$IT_LOG/$1.out" 2>/dev/null | tail -1 | cut -d' ' -f2 | grep . || echo 0; }

# api_guest NAME [pinless args...]: starts the ticker guest in the background with an API
# socket at $API_DIR/NAME.sock; sets API_PID (pinless's pid) and waits until it ticks.
api_guest() {
  local name=$1 i; shift
  "$PINLESS" run --kernel "$L2_KERNEL" --initrd "$INITRD" --memory size=256M \
    --cmdline "$BASE_CMDLINE pinless.test=ticker" --api-socket "$API_DIR/$name.sock" \
    --timeline="$IT_LOG/$name.json" --log-level info "$@" </dev/null >"$IT_LOG/$name.out" 2>"$IT_LOG/$name.err" &
  API_PID=$!
  for i in $(seq 1200); do
    [ "$(ticks "$name")" -ge 3 ] && return 0
    kill -0 "$API_PID" 2>/dev/null || break
    sleep 0.1
  done
  return 1
}

# api_wait PID SECONDS: waits for pinless (a child of this shell) to exit; sets API_RC to its
# status, or "running".
api_wait() {
  local pid=$1 i
  API_RC=running
  for i in $(seq $(($2 * 10))); do
    if ! kill -0 "$pid" 2>/dev/null; then wait "$pid"; API_RC=$?; return; fi
    sleep 0.1
  done
}

jget() { /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin)
for k in sys.argv[1].split("."):
    d = d[int(k)] if isinstance(d, list) else d.get(k) if isinstance(d, dict) else None
print(json.dumps(d) if isinstance(d, (dict, list)) else d)' "$1"; }

api_tests() {
  local dev_args=() bdf=${PINLESS_EDU_BDFS%% *} sock out n1 n2 n3 rc
  [ -n "$bdf" ] && [ -e "/sys/bus/pci/devices/$bdf/driver" ] &&
    [ "$(basename "$(readlink "/sys/bus/pci/devices/$bdf/driver")")" = vfio-pci ] && dev_args=(--device "vfio,host=$bdf")
  if ! api_guest api-a "${dev_args[@]}"; then
    it_fail api-socket "the ticker guest did not come up"; it_show api-a; kill "$API_PID" 2>/dev/null; return
  fi
  local pid=$API_PID
  sock=$API_DIR/api-a.sock

  # The socket, and a second pinless refused on it.
  if [ "$(stat -c %a "$sock" 2>/dev/null)" != 600 ]; then
    it_fail api-socket "mode $(stat -c %a "$sock" 2>&1), want 600"
  elif out=$("$PINLESS" run --kernel "$L2_KERNEL" --memory 64M --api-socket "$sock" 2>&1); then
    it_fail api-socket "a second pinless started on a live socket"
  elif ! echo "$out" | grep -q 'another process is serving'; then
    it_fail api-socket "second pinless: unexpected message: $out"
  else
    it_pass api-socket "mode 600; a second pinless: $(echo "$out" | tail -1 | cut -c1-150)"
  fi

  # vm.info with curl.
  out=$(curl -sS --unix-socket "$sock" http://localhost/api/v1/vm.info)
  if [ "$(echo "$out" | jget pid)" != "$pid" ] || [ "$(echo "$out" | jget state)" != running ] ||
     [ "$(echo "$out" | jget config.memory.size)" != 268435456 ]; then
    it_fail api-info "vm.info: $out"
  elif [ ${#dev_args[@]} -gt 0 ] && [ "$(echo "$out" | jget devices.0.host)" != "$bdf" ]; then
    it_fail api-info "device $bdf not in vm.info: $out"
  else
    it_pass api-info "pid $pid, state running, devices $(echo "$out" | jget devices | tr -d ' ' | cut -c1-120)"
  fi

  # vm.counters: exits counted; pinned bytes as the exit timeline will say (static pins).
  local counters; counters=$(curl -sS --unix-socket "$sock" http://localhost/api/v1/vm.counters)
  local exits; exits=$(echo "$counters" | jget vm_exits.total)
  local pinned; pinned=$(echo "$counters" | jget dma.pinned_bytes)
  if ! [ "${exits:-0}" -gt 0 ] 2>/dev/null; then
    it_fail api-counters "no VM exits counted: $counters"
  else
    it_pass api-counters "$exits exits ($(echo "$counters" | jget vm_exits.by_reason | tr -d ' ')), pinned ${pinned} B"
  fi

  # vm.timeline: the startup events.
  local tl; tl=$(curl -sS --unix-socket "$sock" http://localhost/api/v1/vm.timeline)
  local first; first=$(echo "$tl" | /usr/bin/python3 -c 'import json,sys; print([e["t_us"] for e in json.load(sys.stdin)["events"] if e["name"]=="first_kvm_run"][0])' 2>/dev/null)
  if [ -z "$first" ]; then it_fail api-timeline "no first_kvm_run in $tl"; else it_pass api-timeline "first_kvm_run at $first us"; fi

  # Pause and resume with pinless ctl: the ticker stops and goes on.
  if ! out=$("$PINLESS" ctl --api-socket "$sock" pause 2>&1); then
    it_fail api-pause "ctl pause: $out"
  else
    sleep 0.5; n1=$(ticks api-a); sleep 2; n2=$(ticks api-a)
    local st; st=$("$PINLESS" ctl --api-socket "$sock" --json info | jget state)
    "$PINLESS" ctl --api-socket "$sock" resume >/dev/null 2>&1
    sleep 2; n3=$(ticks api-a)
    if [ "$n2" != "$n1" ] || [ "$st" != paused ]; then
      it_fail api-pause "paused (state $st), the ticker still went $n1 -> $n2"
    elif [ "$n3" -le $((n2 + 3)) ]; then
      it_fail api-pause "resumed, but the ticker only went $n2 -> $n3 in 2 s"
    else
      it_pass api-pause "paused: ticker $n1 -> $n2 in 2 s; resumed: $n2 -> $n3 in 2 s"
    fi
  fi

  # Misbehaving clients while the guest ticks.
  n1=$(ticks api-a)
  if ! out=$(/usr/bin/python3 "$HERE/api_abuse.py" "$sock" 8 2>&1); then
    it_fail api-abuse "$out"
  else
    n2=$(ticks api-a)
    local c; c=$(curl -sS --unix-socket "$sock" http://localhost/api/v1/vm.counters | jget api)
    if [ $((n2 - n1)) -lt 10 ]; then
      it_fail api-abuse "the guest barely ran meanwhile: ticker $n1 -> $n2; $out"
    else
      it_pass api-abuse "$out; guest ticker $n1 -> $n2 meanwhile; server: $(echo "$c" | tr -d ' ')"
    fi
  fi

  # Graceful shutdown through the ACPI power button.
  if ! out=$("$PINLESS" ctl --api-socket "$sock" shutdown --timeout 60 2>&1); then
    it_fail api-shutdown "ctl shutdown: $out"; kill "$pid" 2>/dev/null
  else
    api_wait "$pid" 90; rc=$API_RC
    if [ "$rc" != 0 ]; then
      it_fail api-shutdown "pinless: $rc after shutdown, want 0"; it_show api-a; kill -9 "$pid" 2>/dev/null
    elif ! grep -q 'power button' "$IT_LOG/api-a.out"; then
      it_fail api-shutdown "the guest never saw the power button (stopped by the timeout?)"; it_show api-a
    elif [ -e "$sock" ]; then
      it_fail api-shutdown "the socket is still there after exit"
    elif [ -n "${dev_args[*]}" ] && ! grep -q 'released all mappings: pinned 0 B, VmPin 0 kB' "$IT_LOG/api-a.err"; then
      it_fail api-shutdown "pins left: $(grep 'released' "$IT_LOG/api-a.err")"
    else
      local end_pinned; end_pinned=$(jget dma.pinned_bytes <"$IT_LOG/api-a.json" 2>/dev/null)
      if [ -n "${dev_args[*]}" ] && [ "$end_pinned" != "$pinned" ]; then
        it_fail api-counters "vm.counters said pinned $pinned B, the exit timeline $end_pinned B"
      fi
      it_pass api-shutdown "guest: '$(grep -a 'power button' "$IT_LOG/api-a.out" | head -1 | tr -d '\r')'; exit 0, socket removed$([ -n "${dev_args[*]}" ] && echo ", $(grep -o 'released all mappings.*' "$IT_LOG/api-a.err")")"
    fi
  fi

  # Hard stop.
  if ! api_guest api-b; then
    it_fail api-stop "the second ticker guest did not come up"; it_show api-b; kill "$API_PID" 2>/dev/null
  else
    pid=$API_PID
    out=$("$PINLESS" ctl --api-socket "$API_DIR/api-b.sock" stop 2>&1)
    api_wait "$pid" 30; rc=$API_RC
    if [ "$rc" != 0 ] || ! grep -q 'stopped through the API' "$IT_LOG/api-b.err" || [ -e "$API_DIR/api-b.sock" ]; then
      it_fail api-stop "ctl: $out; pinless: $rc; $(tail -2 "$IT_LOG/api-b.err")"; kill -9 "$pid" 2>/dev/null
    else
      it_pass api-stop "exit 0: $(grep -o 'stopped through the API.*' "$IT_LOG/api-b.err")"
    fi
  fi
}

if [ -x "$PINLESS" ] && [ -e /dev/kvm ] && command -v curl >/dev/null; then
  api_tests
else
  it_fail api "prerequisites: pinless, /dev/kvm and curl"
fi
rm -rf "$API_DIR"
if [ -n "${API_STANDALONE:-}" ]; then it_summary; fi
