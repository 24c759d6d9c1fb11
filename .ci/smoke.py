#!/usr/bin/env python3
"""Wait until a DNS server answers NAME with ADDRESS over UDP, polling with a deadline.

  python3 .ci/smoke.py HOST PORT NAME ADDRESS DEADLINE_SECONDS SERVER_PID

Exits 0 once an A answer holds ADDRESS; 1 at the deadline, or as soon as SERVER_PID has
exited (the server died: no point in waiting). Standard library only, so it checks the
Quick start install without borrowing anything from it.
"""

import os
import random
import socket
import struct
import sys
import time


def query(name: str) -> tuple[int, bytes]:
    """A recursion-desired A/IN query for ``name``: (id, packet)."""
    ident = random.randrange(1 << 16)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return ident, struct.pack("!6H", ident, 0x0100, 1, 0, 0, 0) + labels + b"\0\0\1\0\1"


def addresses(reply: bytes, ident: int) -> list[str]:
    """The A records of the answer section of ``reply`` (RFC 1035 4.1), if its id matches."""
    rid, _flags, qd, an, _ns, _ar = struct.unpack("!6H", reply[:12])
    if rid != ident:
        return []
    pos = 12

    def skip_name(pos: int) -> int:
        while reply[pos] != 0:
            if reply[pos] & 0xC0 == 0xC0:
                return pos + 2
            pos += reply[pos] + 1
        return pos + 1

    for _ in range(qd):
        pos = skip_name(pos) + 4
    found = []
    for _ in range(an):
        pos = skip_name(pos)
        rtype, _cls, _ttl, length = struct.unpack("!HHIH", reply[pos : pos + 10])
        pos += 10
        if rtype == 1 and length == 4:
            found.append(socket.inet_ntoa(reply[pos : pos + 4]))
        pos += length
    return found


def alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return waited == 0


def main() -> int:
    host, port, name, want, limit, pid = sys.argv[1:7]
    deadline = time.monotonic() + float(limit)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        while time.monotonic() < deadline:
            if not alive(int(pid)):
                print(f"smoke: the server (pid {pid}) exited before answering", file=sys.stderr)
                return 1
            ident, packet = query(name)
            try:
                sock.sendto(packet, (host, int(port)))
                got = addresses(sock.recv(65535), ident)
            except OSError:
                got = []
            if want in got:
                print(f"smoke: {name} -> {', '.join(got)} from {host}:{port}")
                return 0
            time.sleep(0.2)
    print(f"smoke: no answer {want} for {name} from {host}:{port} in {limit} s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
