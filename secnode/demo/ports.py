"""Local ports for the demo federation, the benchmark and the tests.

A port from the kernel (``bind(("127.0.0.1", 0))``) lies in the ephemeral
range that outgoing connections use too, and between choosing it and the
server binding it (for the federation: the whole build, with dozens of HTTP
calls) an outgoing connection can take it, and the server cannot start
("address already in use"). So ports are drawn below the ephemeral range,
where only listeners live, checked free by binding, and never handed out twice
by one process. Several processes that choose ports at once (parallel test
workers) each take their own residue class: ``SECNODE_PORT_SLICE=k/n`` gives
this process the ports with ``port % n == k``.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 20000
_handed_out: set[int] = set()
_random = random.Random()  # seeded from os.urandom: parallel processes draw differently


def _below_ephemeral() -> range | None:
    try:
        first = int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if first - _LOWEST < 1000:
        return None
    k, n = _slice()
    return range(_LOWEST + (k - _LOWEST) % n, first, n)


def _slice() -> tuple[int, int]:
    """(k, n) from ``SECNODE_PORT_SLICE=k/n``; (0, 1) when unset or malformed."""
    text = os.environ.get("SECNODE_PORT_SLICE", "")
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        return 0, 1
    return (k, n) if 0 <= k < n <= 64 else (0, 1)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now and no outgoing connection will take."""
    candidates = _below_ephemeral()
    if candidates is not None:
        for _ in range(200):
            port = _random.choice(candidates)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    with socket.socket() as s:  # no such range here: the kernel's choice
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    _handed_out.add(port)
    return port
