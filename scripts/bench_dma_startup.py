#!/usr/bin/env python3
"""Startup with one DMA device: pin vs fault policy across RAM sizes (see bench-dma-startup).

Runs where /dev/kvm, /dev/iommu (with CONFIG_IOMMUFD_TEST) and an edu device bound to vfio-pci
exist (PINLESS_EDU_BDFS or --edu BDF). Per (mode, size) it boots the test guest N times,
alternating modes so noise hits both, and prints medians of: exec -> guest boot-complete
marker, the pin_region phases, and the whole DMA setup (dma_backend .. vfio_ready).
"""
import argparse
import fcntl
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile

IOMMU_IOAS_ALLOC = 0x3B81
IOMMU_TEST_CMD = 0x3BA0
IOMMU_TEST_OP_MOCK_DOMAIN = 2
TEST_CMD_SIZE = 72
# none: the same VM without a device, to separate pinless's DMA cost from the guest kernel's
# own RAM-size-dependent boot work (memmap init under nested TCG).
MODES = ("pin", "fault", "none")


def ioas_alloc(fd):
    buf = bytearray(struct.pack("<III", 12, 0, 0))
    fcntl.ioctl(fd, IOMMU_IOAS_ALLOC, buf)
    return struct.unpack_from("<III", buf)[2]


def mock_domain(fd, ioas):
    buf = bytearray(TEST_CMD_SIZE)
    struct.pack_into("<IIII", buf, 0, TEST_CMD_SIZE, IOMMU_TEST_OP_MOCK_DOMAIN, ioas, 0)
    fcntl.ioctl(fd, IOMMU_TEST_CMD, buf)
    stdev, hwpt, idev = struct.unpack_from("<III", buf, 16)
    return stdev, hwpt, idev


def parse_size(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(s[:-1]) * units[s[-1]] if s[-1] in units else int(s)


def run_once(args, mode, size, tmp):
    tl = os.path.join(tmp, f"{mode}-{size}.json")
    cmd = [args.pinless, "run", "--kernel", args.kernel, "--initrd", args.initrd,
           "--memory", f"size={size}", "--serial", "file=/dev/null", "--timeline=" + tl,
           "--cmdline", "console=ttyS0 reboot=k panic=-1 quiet noxsave pinless.test=boot"]
    fds = ()
    iommufd = None
    if mode == "pin":
        cmd += ["--device", f"vfio,host={args.edu}", "--iommu-backend", "iommufd"]
    elif mode == "fault":
        iommufd = os.open("/dev/iommu", os.O_RDWR)
        home = ioas_alloc(iommufd)
        stdev, _, idev = mock_domain(iommufd, home)
        cmd += ["--iommufd-fd", str(iommufd), "--device", f"mock,idev={idev},stdev={stdev},home={home}",
                "--ram-region", f"0:{size},dma=fault"]
        fds = (iommufd,)
    try:
        p = subprocess.run(cmd, pass_fds=fds, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           timeout=600)
    finally:
        if iommufd is not None:
            os.close(iommufd)
    if p.returncode != 0:
        sys.exit(f"{mode} {size}: pinless exited {p.returncode}: {p.stderr.strip()[-400:]}")
    doc = json.load(open(tl))
    ev = {e["name"]: e["t_us"] for e in doc["events"]}
    ph = doc["phases"]
    pin_ms = sum(p["duration_us"] for p in ph if p["name"] == "pin_region") / 1000
    dma_ms = (ev["vfio_ready"] - ev["devices_ready"]) / 1000 if "vfio_ready" in ev else 0.0
    return {"marker_ms": ev["guest_boot_complete"] / 1000, "run_ms": ev["first_kvm_run"] / 1000,
            "pin_ms": pin_ms, "dma_ms": dma_ms,
            "pinned": doc["dma"]["pinned_peak_bytes"] if "dma" in doc else 0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--pinless", required=True)
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--sizes", default="1G,4G")
    ap.add_argument("--edu", default=(os.environ.get("PINLESS_EDU_BDFS", "").split() or [""])[0])
    args = ap.parse_args()
    if not args.edu:
        sys.exit("no edu device: set PINLESS_EDU_BDFS or --edu BDF (bound to vfio-pci)")
    if not os.path.exists("/dev/iommu"):
        sys.exit("no /dev/iommu: needs the iommufd kernel (scripts/testbed run --kernel iommufd)")
    sizes = args.sizes.split(",")
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.n):
            for size in sizes:
                for mode in MODES:
                    r = run_once(args, mode, size, tmp)
                    res.setdefault((mode, size), []).append(r)
                    print(f"  rep {rep + 1}: {mode:5} {size:>4}: first KVM_RUN {r['run_ms']:8.1f} ms, "
                          f"marker {r['marker_ms']:8.1f} ms, "
                          f"pin {r['pin_ms']:8.1f} ms, dma setup {r['dma_ms']:8.1f} ms", flush=True)
    print()
    print(f"startup with one DMA device, median of {args.n} (ms; exec -> guest boot-complete marker)")
    print(f"{'mode':6} {'device':10} {'RAM':>5} {'1st KVM_RUN':>11} {'marker':>9} {'pin phases':>11} "
          f"{'dma setup':>10} {'pinned peak':>12}  growth vs {sizes[0]} (KVM_RUN, marker)")
    base = {}
    for mode in MODES:
        for size in sizes:
            rs = res[(mode, size)]
            med = {k: statistics.median(r[k] for r in rs) for k in ("run_ms", "marker_ms", "pin_ms", "dma_ms")}
            b = base.setdefault(mode, med)
            dev = {"pin": "edu/vfio", "fault": "mock", "none": "-"}[mode]
            print(f"{mode:6} {dev:10} {size:>5} {med['run_ms']:11.1f} {med['marker_ms']:9.1f} {med['pin_ms']:11.1f} "
                  f"{med['dma_ms']:10.1f} {max(r['pinned'] for r in rs) >> 20:>8} MiB  "
                  f"x{med['run_ms'] / b['run_ms']:.2f}, x{med['marker_ms'] / b['marker_ms']:.2f}")


if __name__ == "__main__":
    main()
