# Sourced by all.sh: pinless boots the L2 test guest on real KVM (issue: core VMM).
# Uses $PINLESS, $INITRD, $L2_KERNEL and $BASE_CMDLINE from env.sh.

vmm_boot_checks() {
  local missing=""
  [ -x "$PINLESS" ] || missing+=" $PINLESS"
  [ -f "$INITRD" ] || missing+=" $INITRD"
  [ -f "$L2_KERNEL" ] || missing+=" $L2_KERNEL"
  if [ -n "$missing" ]; then it_fail vmm-prerequisites "missing:$missing"; return 1; fi
  [ -e /dev/kvm ] || { it_fail vmm-prerequisites "no /dev/kvm"; return 1; }
}

# pinless_guest NAME WANT_STATUS TEST [pinless args...]: boots the guest running TEST.
pinless_guest() {
  local name=$1 want=$2 test=$3; shift 3
  it_run "$name" timeout 300 "$PINLESS" run --kernel "$L2_KERNEL" --initrd "$INITRD" \
    --cmdline "$BASE_CMDLINE pinless.test=$test $PINLESS_EXTRA_CMDLINE" --timeline="$IT_LOG/$name.json" "$@"
  local rc=$?
  if [ "$rc" != "$want" ]; then
    it_fail "$name" "pinless exited $rc, want $want"; it_show "$name"; return 1
  fi
}

# timeline_has FILE EVENT...: every named event is in the timeline JSON.
timeline_check() {
  /usr/bin/python3 "$HERE/check_timeline.py" "$@"
}

if vmm_boot_checks; then
  PINLESS_EXTRA_CMDLINE=""
  if pinless_guest boot-1cpu 0 boot --cpus 1 --memory size=256M; then
    if ! grep -q 'PINLESS-TEST boot PASS' "$IT_LOG/boot-1cpu.out"; then
      it_fail boot-1cpu "guest did not report PASS"; it_show boot-1cpu
    elif msg=$(timeline_check "$IT_LOG/boot-1cpu.json" 2>&1); then
      it_pass boot-1cpu "$msg"
    else
      it_fail boot-1cpu "timeline: $msg"
    fi
  fi

  PINLESS_EXTRA_CMDLINE="pinless.cpus=2"
  if pinless_guest boot-2cpu 0 smp --cpus 2 --memory size=256M; then
    if grep -q 'PINLESS-TEST smp PASS' "$IT_LOG/boot-2cpu.out" && msg=$(timeline_check "$IT_LOG/boot-2cpu.json" 2>&1); then
      it_pass boot-2cpu "$msg"
    else
      it_fail boot-2cpu "guest did not see 2 CPUs or timeline incomplete: $msg"; it_show boot-2cpu
    fi
  fi
  PINLESS_EXTRA_CMDLINE=""

  if pinless_guest guest-status 7 exit=7 --cpus 1 --memory size=128M; then
    it_pass guest-status "guest-reported status 7 became pinless's exit status"
  fi

  if pinless_guest guest-panic 2 panic --cpus 1 --memory size=128M; then
    if grep -qiE 'reset|reboot|panic' "$IT_LOG/guest-panic.err"; then
      it_pass guest-panic "exit 2: $(grep -iE 'reset|reboot|panic' "$IT_LOG/guest-panic.err" | tail -1)"
    else
      it_fail guest-panic "no message naming the cause"; it_show guest-panic
    fi
  fi

  if pinless_guest guest-reboot 2 reboot --cpus 1 --memory size=128M; then
    it_pass guest-reboot "exit 2: $(tail -1 "$IT_LOG/guest-reboot.err")"
  fi

  # Guest RAM above the 32-bit PCI hole: 4 GiB splits into 3 GiB low + 1 GiB from 4 GiB up.
  if pinless_guest boot-4g 0 boot --cpus 1 --memory size=4G; then
    if grep -qE 'PINLESS-TEST boot PASS' "$IT_LOG/boot-4g.out" && grep -qE 'boot: 1 cpus, (3[6-9][0-9][0-9]|40[0-9][0-9]) MiB' "$IT_LOG/boot-4g.out"; then
      it_pass boot-4g "$(grep -m1 'boot:' "$IT_LOG/boot-4g.out")"
    else
      it_fail boot-4g "guest did not see about 4 GiB"; it_show boot-4g
    fi
  fi

  # Guest RAM on hugetlbfs: a clear error while none are reserved, a boot once they are
  # (only in the testbed, where changing nr_hugepages touches nothing real), and THP.
  if [ "${PINLESS_TESTBED:-0}" = 1 ]; then
    echo 0 >/proc/sys/vm/nr_hugepages
    it_run hugepages-none "$PINLESS" run --kernel "$L2_KERNEL" --initrd "$INITRD" --memory size=128M,hugepages=on
    if [ $? = 1 ] && grep -q 'nr_hugepages' "$IT_LOG/hugepages-none.err"; then
      it_pass hugepages-none "$(head -1 "$IT_LOG/hugepages-none.err")"
    else it_fail hugepages-none "wrong status or message"; it_show hugepages-none; fi
    echo 64 >/proc/sys/vm/nr_hugepages
    if pinless_guest hugepages 0 boot --memory size=128M,hugepages=on; then it_pass hugepages "128M on 2M hugetlbfs pages"; fi
    echo 0 >/proc/sys/vm/nr_hugepages
  fi
  if pinless_guest thp 0 boot --memory size=128M,thp=on; then it_pass thp "128M with transparent huge pages"; fi
  # No UART at all (the command line still says console=ttyS0): the guest's tests must not
  # fail on console writes, and its status still comes back through the debug port.
  if pinless_guest serial-off 0 boot --memory size=128M --serial off; then
    if [ ! -s "$IT_LOG/serial-off.out" ]; then it_pass serial-off "boot test passed with no console, nothing printed"
    else it_fail serial-off "output with --serial off"; fi
  fi

  # Uncompressed ELF vmlinux (64-bit boot protocol) when the kernel cache kept one.
  VMLINUX=$(dirname "$L2_KERNEL")/vmlinux
  if [ -f "$VMLINUX" ]; then
    it_run boot-elf timeout 300 "$PINLESS" run --kernel "$VMLINUX" --initrd "$INITRD" \
      --cmdline "$BASE_CMDLINE pinless.test=boot" --memory size=256M
    rc=$?
    if [ $rc = 0 ] && grep -q 'PINLESS-TEST boot PASS' "$IT_LOG/boot-elf.out"; then it_pass boot-elf "ELF vmlinux booted"
    else it_fail boot-elf "pinless exited $rc"; it_show boot-elf; fi
  fi

  # Bad input: clear one-line errors, exit status 1, no guest started.
  it_run bad-kernel-missing "$PINLESS" run --kernel /nonexistent/bzImage
  if [ $? = 1 ] && grep -q '/nonexistent/bzImage' "$IT_LOG/bad-kernel-missing.err"; then
    it_pass bad-kernel-missing "$(head -1 "$IT_LOG/bad-kernel-missing.err")"
  else it_fail bad-kernel-missing "wrong status or message"; it_show bad-kernel-missing; fi

  it_run bad-kernel-format "$PINLESS" run --kernel "$INITRD"
  if [ $? = 1 ] && grep -qiE 'bzImage|ELF' "$IT_LOG/bad-kernel-format.err"; then
    it_pass bad-kernel-format "$(head -1 "$IT_LOG/bad-kernel-format.err")"
  else it_fail bad-kernel-format "wrong status or message"; it_show bad-kernel-format; fi
fi
