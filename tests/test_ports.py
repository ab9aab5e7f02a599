"""Ports for servers started later (the federation binds its ports minutes after choosing
them): never from the range outgoing connections draw from, never the same one twice."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from secnode.demo import ports
from secnode.demo.ports import free_port


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    range_file = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if range_file.exists():
        first_ephemeral = int(range_file.read_text().split()[0])
        if first_ephemeral - 20000 >= 1000:
            assert all(20000 <= p < first_ephemeral for p in ports)
    for port in ports[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_another_process_listens_on_is_skipped() -> None:
    candidates = ports._below_ephemeral()
    if candidates is None:
        pytest.skip("no ephemeral port range to stay below on this system")
    ports._random.seed(7)
    first_choice = random.Random(7).choice(candidates)  # what free_port would draw first
    with socket.socket() as listener:
        try:
            listener.bind(("127.0.0.1", first_choice))
        except OSError:
            pytest.skip(f"port {first_choice} is busy already")
        listener.listen()
        ports._handed_out.discard(first_choice)
        assert free_port() != first_choice
