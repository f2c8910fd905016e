#!/usr/bin/python3
"""Startup benchmark: pinless vs QEMU (microvm, q35) on the same kernel, initrd and cmdline.

Time to marker = from just before exec of the VMM to the guest's boot-complete marker (the
guest's /init writes 0x01 to port 0xf4 as its first action, docs/guest-abi.md):
  pinless: exec time (measured here) to the timeline's guest_boot_complete, using the
           timeline's absolute CLOCK_MONOTONIC start so both clocks are the same.
  QEMU:    QEMU gets `-device isa-debug-exit,iobase=0xf4`, so the marker write ends QEMU;
           exec to process exit (an upper bound: it includes QEMU's teardown).
Run by scripts/bench-startup. Prints measurements only; asserts nothing.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

EVENTS = ["config_parsed", "memory_ready", "kernel_loaded", "devices_ready", "first_kvm_run",
          "guest_boot_complete", "guest_shutdown", "process_exit"]


def run_pinless(args, tmp, i):
    tl = os.path.join(tmp, f"timeline-{i}.json")
    cmd = [args.pinless, "run", "--kernel", args.kernel, "--initrd", args.initrd,
           "--cmdline", args.cmdline, "--cpus", str(args.cpus), "--memory", f"size={args.memory}",
           "--serial", "off", f"--timeline={tl}"]
    t0 = time.monotonic_ns()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    t_end = time.monotonic_ns()
    if p.returncode != 0:
        sys.exit(f"pinless failed ({p.returncode}): {p.stderr.decode()[-500:]}")
    with open(tl) as f:
        doc = json.load(f)
    ev = {e["name"]: e["t_us"] for e in doc["events"]}
    start_ns = doc.get("start_monotonic_ns")
    row = {k: ev[k] / 1000.0 for k in EVENTS if k in ev}
    if start_ns is not None and "guest_boot_complete" in ev:
        # exec -> process start (dynamic loading, static init) is counted too.
        row["exec_to_start"] = (start_ns - t0) / 1e6
        row["exec_to_marker"] = (start_ns - t0) / 1e6 + ev["guest_boot_complete"] / 1000.0
    row["exec_to_exit"] = (t_end - t0) / 1e6
    for ph in doc.get("phases", []):
        row["phase:" + ph["name"]] = row.get("phase:" + ph["name"], 0) + ph["duration_us"] / 1000.0
    return row


def run_qemu(args, machine):
    m = {"microvm": "microvm,x-option-roms=off,rtc=off,isa-serial=on,pit=on,pic=on",
         "q35": "q35"}[machine]
    cmd = ["qemu-system-x86_64", "-M", m, "-enable-kvm", "-cpu", "host", "-smp", str(args.cpus),
           "-m", args.memory, "-nodefaults", "-no-user-config", "-display", "none",
           "-serial", "null", "-kernel", args.kernel, "-initrd", args.initrd,
           "-append", args.cmdline, "-device", "isa-debug-exit,iobase=0xf4,iosize=0x02"]
    t0 = time.monotonic_ns()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    t1 = time.monotonic_ns()
    # isa-debug-exit: status (value << 1) | 1; marker 0x01 -> 3.
    if p.returncode != 3:
        sys.exit(f"qemu {machine} did not exit on the marker ({p.returncode}): {p.stderr.decode()[-500:]}")
    return {"exec_to_marker": (t1 - t0) / 1e6}


def stats(rows, key):
    vals = [r[key] for r in rows if key in r]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--pinless", required=True)
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--memory", default="256M")
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--cmdline", default="console=ttyS0 reboot=k panic=-1 quiet pinless.test=boot")
    args = ap.parse_args()
    if os.environ.get("PINLESS_TESTBED") == "1" and "noxsave" not in args.cmdline:
        # Nested SVM under TCG does not intercept XSETBV; every L2 guest needs noxsave there
        # (docs/testbed.md). Same command line for pinless and QEMU.
        args.cmdline += " noxsave"

    tmp = tempfile.mkdtemp(prefix="pinless-bench-")
    print(f"# startup benchmark: {args.n} boots each, {args.cpus} vCPU, {args.memory}, kernel {args.kernel}")
    print(f"# host: {os.uname().release}, {os.cpu_count()} cpu(s); date {time.strftime('%Y-%m-%d %H:%M')}")
    pin = [run_pinless(args, tmp, i) for i in range(args.n)]
    qemu = {}
    if not args.no_qemu:
        for m in ("microvm", "q35"):
            qemu[m] = [run_qemu(args, m) for _ in range(args.n)]

    print(f"\n{'pinless (ms since exec/start)':34} {'median':>9} {'min':>9} {'max':>9}")
    keys = ["exec_to_start"] + EVENTS + ["exec_to_marker", "exec_to_exit"]
    keys += sorted(k for k in pin[0] if k.startswith("phase:"))
    for k in keys:
        s = stats(pin, k)
        if s:
            print(f"{k:34} {s[0]:9.2f} {s[1]:9.2f} {s[2]:9.2f}")
    pm = stats(pin, "exec_to_marker")
    for m, rows in qemu.items():
        s = stats(rows, "exec_to_marker")
        print(f"{'qemu ' + m + ' exec_to_marker':34} {s[0]:9.2f} {s[1]:9.2f} {s[2]:9.2f}")
    if pm:
        for m, rows in qemu.items():
            s = stats(rows, "exec_to_marker")
            print(f"ratio pinless/qemu-{m} (median time to marker): {pm[0] / s[0]:.3f}")
        own = stats(pin, "first_kvm_run")
        if own:
            print(f"pinless's own work before first KVM_RUN: {own[0]:.2f} ms = "
                  f"{100.0 * own[0] / pm[0]:.1f}% of time to marker (median)")


if __name__ == "__main__":
    main()
