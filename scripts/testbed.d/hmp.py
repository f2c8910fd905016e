#!/usr/bin/env python3
"""hmp.py SOCKET CMD [CMD ...]: runs QEMU human-monitor commands on a unix socket and prints
each command's answer. The testbed uses it to record L1's CPU and interrupt state when a run
overstays its --timeout, so a hang leaves evidence instead of a bare "timed out".

hmp.py --kick SOCKET: presses a key (an i8042 interrupt) and prints where L1's CPU was and
which vectors its local APIC held. scripts/testbed calls it when L1's heartbeat stops: QEMU
7.2's TCG sometimes stops delivering L1's interrupts (a deliverable vector stays in the IRR
while the CPU stays halted, or keeps running L2 code), and the key press makes QEMU look at
the APIC again."""
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


def cpu_state(regs: str, lapic: str) -> str:
    """Where the CPU is and what its local APIC holds, in one line."""
    rip = re.search(r"RIP=([0-9a-f]+)", regs)
    halted = re.search(r"\bHLT=([01])\b", regs)
    rfl = re.search(r"RFL=([0-9a-f]+)", regs)
    irr = re.search(r"^IRR\s+(.*)$", lapic, re.M)
    isr = re.search(r"^ISR\s+(.*)$", lapic, re.M)
    ppr = re.search(r"PPR 0x([0-9a-f]+)", lapic)
    if not (rip and halted and rfl and irr and isr and ppr):
        return "CPU state unreadable from the monitor"
    pending = [int(v) for v in irr.group(1).split() if v.isdigit()]
    in_service = [int(v) for v in isr.group(1).split() if v.isdigit()]
    where = "halted" if halted.group(1) == "1" else "running"
    return (f"CPU {where} at RIP {rip.group(1)} (IF={int(rfl.group(1), 16) >> 9 & 1}), APIC IRR {pending} "
            f"ISR {in_service} PPR {ppr.group(1)}")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--kick":
        try:
            regs, lapic = run(sys.argv[2], ["info registers", "info lapic"])
            run(sys.argv[2], ["sendkey shift"])
        except OSError as e:
            print(f"hmp: {sys.argv[2]}: {e}", file=sys.stderr)
            return 1
        print(f"{cpu_state(regs, lapic)}; pressed a key")
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
