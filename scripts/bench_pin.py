#!/usr/bin/python3
"""Pin-phase benchmark: pinless's PinnedRegion path vs a bare program doing one MAP.

`measure` runs where /dev/vfio (type1) or /dev/iommu (iommufd) and a device bound to
vfio-pci exist (a host, or L1 of the testbed). For every backend, backing and size it runs,
alternating the order within each repetition so that drift hits every side:
  bare           tests/bench/bare_pin: memfd RAM, one VFIO_IOMMU_MAP_DMA / IOMMU_IOAS_MAP
  pinless        tests/bench/bench_pin_pinless: GuestMemory + PinnedRegion, default settings
  pinless-1      the same with a forced single-threaded MADV_POPULATE_WRITE pass before the
                 MAP: what pinless did before the parallel path (the "before" figure)
Each run is a fresh process with fresh, untouched memory. It prints a table of medians and
one `ROW {json}` line per cell; `report FILE...` merges ROW lines of several runs (type1 on
the stock kernel, iommufd on the iommufd kernel) into one table. Prints measurements only.
Run by scripts/bench-pin.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SIDES = ["bare", "pinless", "pinless-1"]
HUGE = 2 << 20


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def meminfo(key):
    for line in read("/proc/meminfo").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def prepare_backing(backing, max_size, testbed):
    """Returns None if the backing can be used, else the reason to skip it."""
    if backing == "thp":
        path = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
        mode = read(path)
        if "[never]" in mode or "[deny]" in mode or not mode:
            if not testbed:
                return f"shmem THP off ({path}: {mode or 'missing'}); set it to advise to measure"
            with open(path, "w") as f:  # L1 is ours: nothing real depends on this setting
                f.write("advise")
    if backing == "hugetlb":
        need = max_size // HUGE
        if testbed:
            with open("/proc/sys/vm/nr_hugepages", "w") as f:
                f.write(str(need))
        free = meminfo("HugePages_Free")
        if free < need:
            return f"{free} free 2M huge pages, {need} needed (echo {need} > /proc/sys/vm/nr_hugepages)"
    return None


def run_one(args, side, backend, backing, size):
    if side == "bare":
        cmd = [os.path.join(args.bindir, "bare_pin")]
    else:
        pop = "auto" if side == "pinless" else side.split("-", 1)[1]
        cmd = [os.path.join(args.bindir, "bench_pin_pinless"), "--populate", pop]
    cmd += ["--backend", backend, "--bdf", args.bdf, "--size", str(size), "--backing", backing]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("side=")), None)
    if p.returncode != 0 or line is None:
        print(f"# {side} {backend} {backing} {size >> 20}M failed ({p.returncode}): {p.stderr.strip()[-300:]}")
        return None
    return {k: v for k, v in (kv.split("=", 1) for kv in line.split())}


def median_ms(rows, key="pin_us"):
    return statistics.median(int(r[key]) for r in rows) / 1000.0


def measure(args):
    testbed = os.environ.get("PINLESS_TESTBED") == "1"
    sizes = [int(s) << 20 for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    backings = args.backings.split(",")
    print(f"# bench-pin {time.strftime('%Y-%m-%d %H:%M')}: kernel {os.uname().release}, {os.cpu_count()} cpu(s), "
          f"{meminfo('MemTotal') >> 10} MiB, {'testbed L1' if testbed else 'host'}, {args.reps} reps, "
          f"device {args.bdf}")
    print(f"# THP enabled {read('/sys/kernel/mm/transparent_hugepage/enabled')!r}, "
          f"load {read('/proc/loadavg')}")
    cells = []
    for backing in backings:
        skip = prepare_backing(backing, max(sizes), testbed)
        if skip:
            print(f"# skipping {backing}: {skip}")
            for backend in backends:
                cells.append({"backend": backend, "backing": backing, "skip": skip})
            continue
        for backend in backends:
            # One discarded round first: the first runs after boot load the programs over 9p
            # and find the allocator cold.
            for side in SIDES:
                run_one(args, side, backend, backing, min(sizes))
            for size in sizes:
                rows = {s: [] for s in SIDES}
                for rep in range(args.reps):
                    order = SIDES[rep % len(SIDES):] + SIDES[:rep % len(SIDES)]
                    for side in order:
                        r = run_one(args, side, backend, backing, size)
                        if r:
                            rows[side].append(r)
                cell = {"backend": backend, "backing": backing, "size": size, "kernel": os.uname().release}
                for side, rs in rows.items():
                    if not rs:
                        continue
                    cell[side] = {"pin_ms": median_ms(rs), "populate_ms": median_ms(rs, "populate_us"),
                                  "map_ms": median_ms(rs, "map_us"), "n": len(rs),
                                  "map_calls": int(rs[0]["map_calls"]), "threads": int(rs[0]["threads"]),
                                  "pinned_kb": min(int(r["pinned_kb"]) for r in rs),
                                  "huge_kb": min(int(r["huge_kb"]) for r in rs),
                                  "all_ms": [int(r["pin_us"]) / 1000.0 for r in rs]}
                    if cell[side]["pinned_kb"] < size >> 10:
                        print(f"# warning: {side} {backend} {backing} {size >> 20}M pinned only "
                              f"{cell[side]['pinned_kb']} kB (VmLck+VmPin)")
                cells.append(cell)
                print("ROW " + json.dumps(cell), flush=True)
    if testbed and "hugetlb" in backings:
        with open("/proc/sys/vm/nr_hugepages", "w") as f:
            f.write("0")
    print()
    table(cells)


def table(cells):
    print("| size | backing | backend | bare ms | pinless ms | pinless/bare | before ms | before/bare | "
          "pinless/bare of min | GiB/s bare / pinless | 2M pages | populate threads |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for c in cells:
        if "skip" in c:
            print(f"| - | {c['backing']} | {c['backend']} | skipped: {c['skip']} ||||||||")
            continue
        b, p, p1 = c.get("bare"), c.get("pinless"), c.get("pinless-1")
        gib = c["size"] / (1 << 30)

        def ms(x):
            return f"{x['pin_ms']:.1f}" if x else "-"

        def ratio(x, key="pin_ms"):
            if not (b and x):
                return "-"
            if key == "min":
                return f"{min(b['all_ms']) / min(x['all_ms']):.3f}"
            return f"{b[key] / x[key]:.3f}"

        huge = f"{100.0 * b['huge_kb'] / (c['size'] >> 10):.0f}%" if b else "-"
        rate = f"{gib / (b['pin_ms'] / 1e3):.2f} / {gib / (p['pin_ms'] / 1e3):.2f}" if b and p else "-"
        print(f"| {c['size'] >> 20} MiB | {c['backing']} | {c['backend']} | {ms(b)} | {ms(p)} | {ratio(p)} | "
              f"{ms(p1)} | {ratio(p1)} | {ratio(p, 'min')} | {rate} | {huge} | {p['threads'] if p else '-'} |")
    print("\nms: median wall time of the pin phase over the repetitions (bare: the one MAP ioctl; pinless:"
          " PinnedRegion::create = populate pass, if any, + MAP calls). pinless/bare = bare ms / pinless ms,"
          " i.e. pinless's throughput relative to bare (>= 1: as fast or faster); 'of min' uses each side's"
          " fastest run. before = pinless-1, a forced single-threaded MADV_POPULATE_WRITE pass before the"
          " MAP (what pinless did before). 2M pages: share of the buffer mapped by 2 MiB pages"
          " (smaps_rollup ShmemPmdMapped + Shared/Private_Hugetlb).")
    details = [c for c in cells if "skip" not in c and c.get("pinless-1")]
    if details:
        print("\nsplit of the pin phase, median ms: before = populate pass + MAP; pinless = populate pass + MAP")
        for c in details:
            p1, p = c["pinless-1"], c.get("pinless") or {}
            print(f"  {c['size'] >> 20}M {c['backing']} {c['backend']}: before {p1['populate_ms']:.1f} + "
                  f"{p1['map_ms']:.1f}; pinless {p.get('populate_ms', 0):.1f} + {p.get('map_ms', 0):.1f} "
                  f"({p.get('threads', '-')} threads, {p.get('map_calls', '-')} map call(s))")


def report(files):
    cells = []
    for name in files:
        with open(name, errors="replace") as f:
            for line in f:
                i = line.find("ROW {")
                if i >= 0:
                    cells.append(json.loads(line[i + 4:]))
                elif line.startswith("# skipping") or line.startswith("# bench-pin") or line.startswith("# THP"):
                    print(line.rstrip())
    table(cells)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--bindir", required=True)
    m.add_argument("--bdf", default=(os.environ.get("PINLESS_EDU_BDFS", "").split() or [""])[0])
    m.add_argument("--backends", default="type1")
    m.add_argument("--backings", default="4k,thp,hugetlb")
    m.add_argument("--sizes", default="256,512,1024", help="MiB, comma separated")
    m.add_argument("--reps", type=int, default=5)
    r = sub.add_parser("report")
    r.add_argument("files", nargs="+")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    if args.cmd == "report":
        report(args.files)
        return
    if not args.bdf:
        sys.exit("bench-pin: no device: pass --bdf BDF (bound to vfio-pci)")
    measure(args)


if __name__ == "__main__":
    main()
