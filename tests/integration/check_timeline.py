#!/usr/bin/python3
"""Checks a pinless timeline JSON (docs/timeline.md): every startup phase is present, in
order, and the numbers are sane. Prints a one-line summary; exits 1 with the reason otherwise."""
import json
import sys

ORDER = ["process_start", "config_parsed", "memory_ready", "kernel_loaded", "devices_ready",
         "first_kvm_run", "guest_boot_complete", "guest_shutdown", "process_exit"]


def main(path):
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"cannot read {path}: {e}")
    if doc.get("schema") != "pinless-timeline/1":
        sys.exit(f"unexpected schema {doc.get('schema')!r}")
    first = {}
    for e in doc.get("events", []):
        first.setdefault(e["name"], e["t_us"])
    missing = [n for n in ORDER if n not in first]
    if missing:
        sys.exit(f"missing events: {', '.join(missing)}")
    times = [first[n] for n in ORDER]
    for a, b, ta, tb in zip(ORDER, ORDER[1:], times, times[1:]):
        if tb < ta:
            sys.exit(f"{b} ({tb} us) before {a} ({ta} us)")
    if not isinstance(doc.get("start_monotonic_ns"), int):
        sys.exit("start_monotonic_ns missing")
    print(f"first KVM_RUN at {first['first_kvm_run'] / 1000:.1f} ms, guest marker at "
          f"{first['guest_boot_complete'] / 1000:.1f} ms, exit at {first['process_exit'] / 1000:.1f} ms")


if __name__ == "__main__":
    main(sys.argv[1])
