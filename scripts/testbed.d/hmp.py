#!/usr/bin/env python3
"""hmp.py SOCKET CMD [CMD ...]: runs QEMU human-monitor commands on a unix socket and prints
each command's answer. The testbed uses it to record L1's CPU and interrupt state when a run
overstays its --timeout, so a hang leaves evidence instead of a bare "timed out".

hmp.py --kick-lost-wakeup SOCKET: if L1's CPU 0 is halted with interrupts enabled while its
local APIC holds a deliverable vector in IRR (above the processor priority, nothing in
service), QEMU has lost the wakeup (a TCG bug seen with nested SVM: L1 then sleeps forever);
sends a key press, whose interrupt makes QEMU look at the APIC again, prints what it saw and
exits 0. Exits 1 when the CPU is not in that state (running, or idle with nothing pending)."""
import re
import socket
import sys


def read_prompt(s: socket.socket, timeout: float) -> str:
    s.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"(qemu) "):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf.decode(errors="replace")


def run(sock_path: str, cmds: list) -> list:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    read_prompt(s, 10)
    answers = []
    for cmd in cmds:
        s.sendall(cmd.encode() + b"\n")
        answers.append(read_prompt(s, 30).replace("\r", ""))
    s.close()
    return answers


def lost_wakeup(regs: str, lapic: str):
    """The reason L1 is stuck in a lost wakeup, or None."""
    halted = re.search(r"\bHLT=1\b", regs)
    rfl = re.search(r"RFL=([0-9a-f]+)", regs)
    irr = re.search(r"^IRR\s+(.*)$", lapic, re.M)
    isr = re.search(r"^ISR\s+(.*)$", lapic, re.M)
    ppr = re.search(r"PPR 0x([0-9a-f]+)", lapic)
    if not (halted and rfl and irr and isr and ppr) or not int(rfl.group(1), 16) & 0x200:
        return None
    pending = [int(v) for v in irr.group(1).split() if v.isdigit()]
    in_service = [int(v) for v in isr.group(1).split() if v.isdigit()]
    if not pending or in_service or max(pending) >> 4 <= int(ppr.group(1), 16) >> 4:
        return None
    return f"CPU halted with IF=1, vector(s) {pending} pending in the local APIC (PPR {ppr.group(1)})"


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--kick-lost-wakeup":
        try:
            regs, lapic = run(sys.argv[2], ["info registers", "info lapic"])
            why = lost_wakeup(regs, lapic)
            if not why:
                return 1
            run(sys.argv[2], ["sendkey shift"])
        except OSError as e:
            print(f"hmp: {sys.argv[2]}: {e}", file=sys.stderr)
            return 1
        print(why)
        return 0
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(sys.argv[1])
        read_prompt(s, 10)
        for cmd in sys.argv[2:]:
            s.sendall(cmd.encode() + b"\n")
            out = read_prompt(s, 30)
            # The monitor echoes the command line (with terminal escapes) before the answer.
            lines = [ln for ln in out.replace("\r", "").split("\n") if "(qemu)" not in ln and cmd not in ln]
            print(f"## (qemu) {cmd}")
            print("\n".join(ln for ln in lines if ln.strip()))
    except OSError as e:
        print(f"hmp: {sys.argv[1]}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
