#!/usr/bin/python3
"""Startup benchmark: pinless vs QEMU (microvm, q35) on the same kernel, initrd and cmdline.

Two measures, both from just before exec of the VMM:
  exec_to_marker: to the guest's boot-complete marker (the guest's /init writes 0x01 to port
    0xf4 as its first action, docs/guest-abi.md).
      pinless:      the timeline's guest_boot_complete, placed on this process's clock through
                    the timeline's absolute CLOCK_MONOTONIC start.
      QEMU microvm: `-device isa-debug-exit,iobase=0xf4` ends QEMU on the marker write; exec to
                    process exit (an upper bound: it includes QEMU's teardown).
      QEMU q35:     not measured this way: in the nested testbed the guest's outb to 0xf4
                    takes a #GP under q35 (it works under microvm and pinless).
  exec_to_console: to the console line "PINLESS-TEST boot ..." that /init prints once its
    test ran (a few ms after the marker); the same measure for all three VMMs.
With --device BDF (or --vfio: the testbed's first edu device) it instead boots pinless N
times with and N times without `--device vfio,host=BDF` (alternating, so drift hits both)
and prints the medians of every event and phase side by side with their difference; the
VFIO phases (dma_backend, vfio_reset, pin_region, vfio_bars; docs/timeline.md) explain it.
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


def timed(cmd, want_status, stop_at_line=False):
    """Runs cmd; returns (exec_ns, console_line_ns or None, exit_ns), or None on failure.
    stop_at_line: kill the VMM once the console line is seen (QEMU microvm does not always
    end on guest poweroff)."""
    t0 = time.monotonic_ns()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t_line = None
    try:
        for raw in p.stdout:
            if t_line is None and raw.startswith(b"PINLESS-TEST "):
                t_line = time.monotonic_ns()
                if stop_at_line:
                    p.kill()
                    p.wait()
                    return t0, t_line, t_line
        p.wait(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    err = p.stderr.read().decode(errors="replace")[-400:]
    t_end = time.monotonic_ns()
    if p.returncode != want_status:
        print(f"# {cmd[0]} {' '.join(cmd[1:3])} exited {p.returncode}, want {want_status}: {err}", flush=True)
        return None
    return t0, t_line, t_end


def run_pinless(args, tmp, i, device=None):
    tl = os.path.join(tmp, f"timeline-{i}{'-dev' if device else ''}.json")
    cmd = [args.pinless, "run", "--kernel", args.kernel, "--initrd", args.initrd,
           "--cmdline", args.cmdline, "--cpus", str(args.cpus), "--memory", f"size={args.memory}",
           "--serial", "stdio", f"--timeline={tl}"]
    if device:
        cmd += ["--device", f"vfio,host={device}"]
        if args.iommu_backend:
            cmd += ["--iommu-backend", args.iommu_backend]
    r = timed(cmd, 0)
    if r is None:
        return None
    t0, t_line, t_end = r
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
    if t_line is not None:
        row["exec_to_console"] = (t_line - t0) / 1e6
    for ph in doc.get("phases", []):
        row["phase:" + ph["name"]] = row.get("phase:" + ph["name"], 0) + ph["duration_us"] / 1000.0
        attrs = ph.get("attrs", {})
        if ph["name"] == "pin_region":
            # Summed over regions: bytes pinned, and how the phase splits (attrs in ms).
            for key, label, scale in (("bytes", "MiB (attr bytes)", 2**20), ("populate_ms", "populate_ms", 1),
                                      ("map_ms", "map_ms", 1)):
                if key in attrs:
                    name = "pin_region " + label
                    row[name] = row.get(name, 0) + float(attrs[key]) / scale
            row["pin_region count"] = row.get("pin_region count", 0) + 1
        if ph["name"] == "dma_backend" and "backend" in attrs:
            row["backend"] = attrs["backend"]
    return row


def run_qemu(args, machine, marker_exit):
    m = {"microvm": "microvm,x-option-roms=off,rtc=off,isa-serial=on,pit=on,pic=on",
         "q35": "q35"}[machine]
    cmd = ["qemu-system-x86_64", "-M", m, "-enable-kvm", "-cpu", "host", "-smp", str(args.cpus),
           "-m", args.memory, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
           "-serial", "stdio", "-kernel", args.kernel, "-initrd", args.initrd, "-append", args.cmdline]
    if marker_exit:
        # isa-debug-exit: exit status (value << 1) | 1, so marker 0x01 -> 3.
        r = timed(cmd + ["-device", "isa-debug-exit,iobase=0xf4,iosize=0x02"], 3)
        return None if r is None else {"exec_to_marker": (r[2] - r[0]) / 1e6}
    r = timed(cmd, -9, stop_at_line=True)
    if r is None or r[1] is None:
        return None
    return {"exec_to_console": (r[1] - r[0]) / 1e6}


def stats(rows, key):
    vals = [r[key] for r in rows if key in r]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def side_by_side(args, tmp):
    """--device: pinless with and without the device, alternating; medians side by side."""
    bdf = args.device
    if bdf == "auto":
        bdf = (os.environ.get("PINLESS_EDU_BDFS", "").split() or [""])[0]
        if not bdf:
            sys.exit("--vfio: no edu device in PINLESS_EDU_BDFS (run inside scripts/testbed with --edu 1)")
    print(f"# with vs without --device vfio,host={bdf}, {args.n} boots each, alternating")
    rows = {"without": [], "with": []}
    for i in range(args.n):
        for side in (("without", "with") if i % 2 == 0 else ("with", "without")):
            r = run_pinless(args, tmp, i, bdf if side == "with" else None)
            if r:
                rows[side].append(r)
    if not rows["with"] or not rows["without"]:
        sys.exit(f"not enough successful runs: with {len(rows['with'])}, without {len(rows['without'])}")
    backends = sorted({r.get("backend", "?") for r in rows["with"]})
    print(f"# runs: without {len(rows['without'])}, with {len(rows['with'])}; DMA backend {', '.join(backends)}")
    keys = ["exec_to_start"] + EVENTS + ["exec_to_marker", "exec_to_console", "exec_to_exit"]
    phases = []
    for r in rows["with"] + rows["without"]:
        phases += [k for k in r if (k.startswith("phase:") or k.startswith("pin_region ")) and k not in phases]
    print(f"\n{'median, ms (events: since process start)':40} {'without':>10} {'with':>10} {'delta':>10}")
    for k in keys + phases:
        a, b = stats(rows["without"], k), stats(rows["with"], k)
        if a is None and b is None:
            continue
        fa = f"{a[0]:10.2f}" if a else f"{'-':>10}"
        fb = f"{b[0]:10.2f}" if b else f"{'-':>10}"
        d = (b[0] if b else 0.0) - (a[0] if a else 0.0)
        print(f"{k:40} {fa} {fb} {d:+10.2f}")
    for side in ("without", "with"):
        own = stats(rows[side], "first_kvm_run")
        if own:
            print(f"pinless's own work before first KVM_RUN, {side} device: {own[0]:.2f} ms (median, "
                  f"min {own[1]:.2f}, max {own[2]:.2f})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--pinless", required=True)
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--memory", default="256M")
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--device", help="BDF bound to vfio-pci: pinless with vs without it (no QEMU runs)")
    ap.add_argument("--vfio", dest="device", action="store_const", const="auto",
                    help="--device with the testbed's first edu device")
    ap.add_argument("--iommu-backend", help="passed to pinless with --device (auto, iommufd, type1)")
    ap.add_argument("--cmdline", default="console=ttyS0 reboot=k panic=-1 quiet pinless.test=boot")
    args = ap.parse_args()
    if os.environ.get("PINLESS_TESTBED") == "1" and "noxsave" not in args.cmdline:
        # Nested SVM under TCG does not intercept XSETBV; every L2 guest needs noxsave there
        # (docs/testbed.md). Same command line for pinless and QEMU.
        args.cmdline += " noxsave"

    tmp = tempfile.mkdtemp(prefix="pinless-bench-")
    sys.stdout.reconfigure(line_buffering=True)
    print(f"# startup benchmark: {args.n} boots each, {args.cpus} vCPU, {args.memory}, kernel {args.kernel}")
    print(f"# host: {os.uname().release}, {os.cpu_count()} cpu(s); date {time.strftime('%Y-%m-%d %H:%M')}")
    if args.device:
        side_by_side(args, tmp)
        return
    pin = [r for r in (run_pinless(args, tmp, i) for i in range(args.n)) if r]
    qemu = {}
    if not args.no_qemu:
        qemu["microvm"] = [r for r in (run_qemu(args, "microvm", False) for _ in range(args.n)) if r]
        qemu["microvm"] += [r for r in (run_qemu(args, "microvm", True) for _ in range(args.n)) if r]
        qemu["q35"] = [r for r in (run_qemu(args, "q35", False) for _ in range(args.n)) if r]
    if not pin:
        sys.exit("no pinless run succeeded")

    print(f"\n{'pinless (ms since exec/start)':34} {'median':>9} {'min':>9} {'max':>9}")
    keys = ["exec_to_start"] + EVENTS + ["exec_to_marker", "exec_to_console", "exec_to_exit"]
    keys += sorted(k for k in pin[0] if k.startswith("phase:"))
    for k in keys:
        s = stats(pin, k)
        if s:
            print(f"{k:34} {s[0]:9.2f} {s[1]:9.2f} {s[2]:9.2f}")
    for m, rows in qemu.items():
        for k in ("exec_to_marker", "exec_to_console"):
            s = stats(rows, k)
            if s:
                print(f"{'qemu ' + m + ' ' + k:34} {s[0]:9.2f} {s[1]:9.2f} {s[2]:9.2f}")
    pm = stats(pin, "exec_to_marker")
    for k in ("exec_to_marker", "exec_to_console"):
        mine = stats(pin, k)
        for m, rows in qemu.items():
            theirs = stats(rows, k)
            if mine and theirs:
                print(f"ratio pinless/qemu-{m} (median {k}): {mine[0] / theirs[0]:.3f}")
    if pm:
        own = stats(pin, "first_kvm_run")
        if own:
            print(f"pinless's own work before first KVM_RUN: {own[0]:.2f} ms = "
                  f"{100.0 * own[0] / pm[0]:.1f}% of time to marker (median)")


if __name__ == "__main__":
    main()
