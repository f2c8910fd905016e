#!/usr/bin/python3
"""Checks a `pinless check --json` report against what is known of the machine it ran on.

usage: check_report.py REPORT.json EXIT_STATUS WHERE
  WHERE: host            this build/CI machine (whatever its KVM)
         testbed-KERNEL-IOMMU   inside L1 (scripts/testbed: KERNEL stock|iommufd, IOMMU vtd|...|none)
Prints one line saying what was checked; exits 1 with the reason on the first mismatch."""
import json
import os
import sys


def fail(msg):
    sys.exit(msg)


def item(doc, ident):
    for i in doc["checks"]:
        if i["id"] == ident:
            return i
    fail(f"no check item {ident}")


def main(path, status, where):
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read {path}: {e}")
    status = int(status)
    usable = doc.get("kvm_usable")
    if not isinstance(usable, bool) or not doc.get("summary"):
        fail("report lacks kvm_usable or summary")
    if status != (0 if usable else 1):
        fail(f"exit status {status} contradicts kvm_usable={usable}")
    for i in doc["checks"]:
        if i["level"] not in ("PASS", "WARN", "FAIL"):
            fail(f"item {i['id']}: level {i['level']!r}")
        if i["level"] == "FAIL" and not i["id"].startswith("kvm."):
            fail(f"item {i['id']} FAILs: only KVM items may")
    facts = doc["facts"]
    speed = facts["kvm"].get("speed")
    said = [f"kvm_usable={usable} ({doc['summary']})"]

    if where == "host":
        cpu = open("/proc/cpuinfo").read().split()
        hw = "vmx" in cpu or "svm" in cpu
        pvm = os.path.isdir("/sys/module/kvm_pvm")
        if not os.path.exists("/dev/kvm"):
            if usable:
                fail("no /dev/kvm, yet kvm_usable")
        elif pvm and not hw:
            # kvm_pvm emulates guest code: measured 1/7,400 of host speed.
            if usable:
                fail("kvm_pvm without vmx/svm judged usable at speed")
            if "kvm_pvm" not in facts["kvm"]["modules"]:
                fail("kvm_pvm loaded but not reported")
            if not speed or speed["ratio"] >= 0.2:
                fail(f"kvm_pvm: no slow measurement ({speed})")
            said.append(f"kvm_pvm measured at 1/{1 / max(speed['ratio'], 1e-12):.0f} of host speed")
        return said

    _, kernel, iommu = where.split("-", 2)
    # L1 runs KVM on (emulated) AMD SVM: L2 code runs at ~1x L1's speed.
    if not usable:
        fail(f"testbed L1: KVM judged unusable: {doc['summary']}")
    if "kvm_amd" not in facts["kvm"]["modules"]:
        fail("testbed L1: kvm_amd not reported")
    if iommu == "none":
        if facts["iommus"] or item(doc, "iommu.present")["level"] != "WARN":
            fail("--iommu none: an IOMMU was reported")
    else:
        if not facts["iommus"] or item(doc, "iommu.present")["level"] != "PASS":
            fail("testbed L1 with an emulated IOMMU: none reported")
        if item(doc, "iommu.vfio")["level"] != "PASS":
            fail("testbed L1: VFIO not reported")
        if iommu == "vtd" and facts["allow_unsafe_interrupts_type1"] is not True \
                and facts["allow_unsafe_interrupts_iommufd"] is not True:
            fail("vtd without interrupt remapping runs with allow_unsafe_interrupts, not reported")
    if kernel == "iommufd" and not facts["dev_iommu"]:
        fail("iommufd kernel: /dev/iommu not reported")
    if kernel == "stock" and facts["dev_iommu"]:
        fail("stock kernel has no iommufd, yet /dev/iommu reported")
    if facts["pri_devices"]:
        fail(f"edu has no PRI, yet {facts['pri_devices']} reported")
    said.append(f"ratio {speed['ratio']:.2f}, iommus {facts['iommus']}, iommufd {facts['dev_iommu']}")
    return said


if __name__ == "__main__":
    if len(sys.argv) != 4:
        fail(__doc__)
    print("; ".join(main(*sys.argv[1:])))
