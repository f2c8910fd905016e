#!/usr/bin/python3
"""virtio-iommu benchmark: pinless vs QEMU, the same guest program through each one's
virtio-iommu onto the same edu device (docs/viommu.md).

The guest (pinless.test=viommu-bench) binds edu to vfio-pci in a type1 container and times,
through its own VFIO: 4 KiB map+unmap pairs, 2 MiB map+unmap pairs (strict: each unmap
waits for the device's answer) and one map and unmap of 64 MiB (guest-images/src/
vfio_map_bench.c). Each VMM boots it N times, interleaved (pinless, QEMU, pinless, ...), on
the same kernel, initrd and command line; every figure is the guest's own clock.
  pinless:  --viommu --device vfio,host=BDF (guest domains as iommufd IOASes, IOAS_COPY)
  QEMU:     -M q35 -device virtio-iommu-pci -device vfio-pci,host=BDF (its VFIO container,
            one VFIO_IOMMU_MAP_DMA per guest MAP)
Also reports each VMM's peak VmPin+VmLck (what the host pinned) sampled every 0.2 s.
Run by scripts/bench-viommu. Prints measurements only; asserts nothing.
"""
import argparse
import re
import selectors
import statistics
import subprocess
import time

LINE = re.compile(rb"vfio-map-bench: 4k (\d+)/s .*?; 2m (\d+)/s .*?; 64m map ([\d.]+) ms, unmap ([\d.]+) ms")
KEYS = ["4k_pairs_per_s", "2m_pairs_per_s", "64m_map_ms", "64m_unmap_ms", "peak_pinned_kb"]


def pinned_kb(pid):
    kb = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmPin:", "VmLck:")):
                    kb += int(line.split()[1])
    except OSError:
        pass
    return kb


def run(cmd):
    """One boot: the guest's figures and the VMM's peak pinned kB, or None."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak, out, t0 = 0, b"", time.monotonic()
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    while time.monotonic() - t0 < 300:
        if sel.select(timeout=0.2):
            chunk = p.stdout.read1(65536)
            if not chunk:
                break
            out += chunk
        peak = max(peak, pinned_kb(p.pid))
        if b"PINLESS-TEST " in out:
            break
    p.kill()
    p.wait()
    m = LINE.search(out)
    if not m:
        tail = out[-600:].decode(errors="replace")
        err = p.stderr.read()[-400:].decode(errors="replace")
        print(f"# {cmd[0]}: no vfio-map-bench line; console tail:\n{tail}\n# stderr: {err}", flush=True)
        return None
    return dict(zip(KEYS, [float(g) for g in m.groups()] + [peak]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--pinless", required=True)
    ap.add_argument("--device", required=True, help="BDF of an edu bound to vfio-pci")
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--memory", default="256M")
    args = ap.parse_args()
    cmdline = ("console=ttyS0 reboot=k panic=-1 quiet noxsave pinless.test=viommu-bench "
               "vfio_iommu_type1.allow_unsafe_interrupts=1")
    vmms = {
        "pinless": [args.pinless, "run", "--kernel", args.kernel, "--initrd", args.initrd, "--memory",
                    f"size={args.memory}", "--viommu", "--device", f"vfio,host={args.device}", "--cmdline", cmdline],
        "qemu-7.2 q35": ["qemu-system-x86_64", "-M", "q35", "-enable-kvm", "-cpu", "host", "-m", args.memory,
                         "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio",
                         "-kernel", args.kernel, "-initrd", args.initrd, "-append", cmdline,
                         "-device", "virtio-iommu-pci", "-device", f"vfio-pci,host={args.device}"],
    }
    rows = {k: [] for k in vmms}
    for i in range(args.n):
        for name, cmd in vmms.items():
            r = run(cmd)
            if r:
                rows[name].append(r)
                print(f"# run {i + 1} {name}: " + ", ".join(f"{k} {v:g}" for k, v in r.items()), flush=True)
    print(f"{'':14} {'':16} {'median':>10} {'min':>10} {'max':>10}   (n)")
    for name, rs in rows.items():
        for k in KEYS:
            v = [r[k] for r in rs]
            if v:
                print(f"{name:14} {k:16} {statistics.median(v):10.1f} {min(v):10.1f} {max(v):10.1f}   ({len(v)})")
    if all(rows.values()):
        a, b = rows["pinless"], rows["qemu-7.2 q35"]
        for k in ("4k_pairs_per_s", "2m_pairs_per_s"):
            print(f"ratio pinless/qemu {k} (medians): "
                  f"{statistics.median(r[k] for r in a) / statistics.median(r[k] for r in b):.2f}")


if __name__ == "__main__":
    main()
