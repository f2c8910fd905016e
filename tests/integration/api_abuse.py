#!/usr/bin/env python3
"""api_abuse.py SOCKET SECONDS: misbehaves against pinless's control API for SECONDS and
prints one JSON line with what it did and what came back. Each round, interleaved:
  garbage bytes, a request line without headers end (half-open: then nothing), oversized
  headers and bodies, bad JSON, unknown endpoints, wrong methods, a client that disconnects
  mid-request and mid-response, 40 connections held open at once (over the server's limit),
  pipelined requests, and a valid GET between them.
Exits 1 if the server stopped answering (a connection refused or a valid request failed)."""
import json
import socket
import sys
import time


def conn(path, timeout=15.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def exchange(path, data, read=True):
    """Sends data; returns the status of the first response (0 if none came). The server may
    answer and close before all of an oversized request is sent: the answer still counts."""
    s = conn(path)
    try:
        try:
            s.sendall(data)
        except OSError:
            pass
        if not read:
            return 0
        buf = b""
        try:
            while b"\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
        except OSError:
            pass
        line = buf.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) >= 2 and line[0].startswith(b"HTTP/") else 0
    finally:
        s.close()


def main():
    path, seconds = sys.argv[1], float(sys.argv[2])
    statuses = {}
    sent = 0
    good_ok = 0
    held = []
    end = time.time() + seconds
    cases = [
        b"\x16\x03\x01\x02\x00garbage\r\n\r\n",
        b"GET /api/v1/vm.info HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
        b"PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: 200000\r\n\r\n" + b"{" * 1000,
        b"PUT /api/v1/vm.shutdown HTTP/1.1\r\nContent-Length: 9\r\n\r\n{timeout:",
        b"GET /api/v1/vm.reboot HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"DELETE /api/v1/vm.info HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"PUT /api/v1/vm.info HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /api/v1/vm.info HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"GET /api/v1/vm.counters HTTP/1.1\r\n\r\nGET /api/v1/vm.info HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"PUT /api/v1/vm.shutdown HTTP/1.1\r\nContent-Length: 16\r\nConnection: close\r\n\r\n{\"timeout_s\": 0}",
    ]
    rounds = 0
    while time.time() < end:
        rounds += 1
        for c in cases:
            st = exchange(path, c)
            sent += 1
            statuses[st] = statuses.get(st, 0) + 1
        # Disconnect mid-request and right after a request (before reading the answer).
        exchange(path, b"PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: 50\r\n\r\n{", read=False)
        exchange(path, b"GET /api/v1/vm.timeline HTTP/1.1\r\n\r\n", read=False)
        sent += 2
        # Hold 40 half-open connections (a request line and nothing more), then let them go.
        # Those over the server's limit get a 503 and are closed at once (a write may then
        # fail with EPIPE); only a refused connect means the server stopped listening.
        for _ in range(40):
            try:
                s = conn(path)
            except OSError as e:
                print(json.dumps({"error": f"connect failed while holding: {e}"}))
                return 1
            try:
                s.sendall(b"GET /api/v1/vm.info HT")
            except OSError:
                pass
            held.append(s)
        st = exchange(path, b"GET /api/v1/vm.info HTTP/1.1\r\nConnection: close\r\n\r\n")
        statuses[st] = statuses.get(st, 0) + 1
        sent += 1
        for s in held:
            s.close()
        held.clear()
        time.sleep(0.05)
        st = exchange(path, b"GET /api/v1/vm.info HTTP/1.1\r\nConnection: close\r\n\r\n")
        sent += 1
        statuses[st] = statuses.get(st, 0) + 1
        if st != 200:
            print(json.dumps({"error": f"a valid request got {st} after a round"}))
            return 1
        good_ok += 1
    print(json.dumps({"rounds": rounds, "requests": sent, "statuses": {str(k): v for k, v in sorted(statuses.items())},
                      "valid_requests_answered_200": good_ok}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
