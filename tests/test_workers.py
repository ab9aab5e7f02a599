"""``secnode serve --workers N``: N real processes on the same ports, one supervisor.

The demo federation's Takamatsu node (the client side) is restarted with two workers;
every call below goes through it to Aizu. What the test checks: the kernel spreads the
information systems' connections over both workers (two log chains), ``/metrics`` sums
both, a killed worker is restarted while calls keep succeeding, a supervisor killed
with SIGKILL leaves no worker behind, and SIGTERM stops them all.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from secnode.core.identifiers import ServiceId, SubsystemId
from secnode.demo.calls import call_rest
from secnode.demo.federation import Federation
from secnode.demo.node import NodeHandle
from secnode.demo.two_cities import build_two_city_federation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    federation = build_two_city_federation(tmp_path_factory.mktemp("fed"), say=lambda _m: None)
    try:
        yield federation
    finally:
        federation.stop()


def children(pid: int) -> set[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    workers = set()
    for child in out.split():
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline:
            workers.add(int(child))
    return workers


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive (our own children are reaped by the supervisor, not us).
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False


def serve_workers(fed: Federation, city: NodeHandle, workers: int) -> subprocess.Popen[bytes]:
    """Stop ``city``'s node and start it again as ``serve --workers N``; waits for health."""
    old = fed.processes.pop(f"node-{city.name}", None)
    if old is not None and old.poll() is None:
        old.terminate()
        old.wait(20)
    env = fed.env()
    env["SECNODE_WORKERS"] = str(workers)
    log_file = open(fed.base / "logs" / f"node-{city.name}-workers.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "secnode", "serve", "--dir", str(city.dir)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    log_file.close()
    fed.processes[f"node-{city.name}"] = proc
    fed.wait_port(f"node-{city.name}", city.client_port)
    fed.wait_healthy(city, timeout=60)
    wait_for(lambda: len(children(proc.pid)) >= workers, 30, f"{workers} workers")
    return proc


def log_text(fed: Federation, city: NodeHandle) -> str:
    return (fed.base / "logs" / f"node-{city.name}-workers.log").read_text(errors="replace")


def chains_since(city: NodeHandle, marker: float) -> dict[str, int]:
    """Records per log chain written after ``marker`` (epoch seconds) in the node's log DB."""
    engine = sa.create_engine(f"sqlite:///{city.dir / 'messagelog.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT chain_id, time FROM mlog_records WHERE direction='request_out'")
            ).all()
    finally:
        engine.dispose()
    out: dict[str, int] = {}
    for chain, logged_at in rows:
        if _epoch(logged_at) >= marker:
            out[chain] = out.get(chain, 0) + 1
    return out


def _epoch(value: object) -> float:
    import datetime as dt

    text = str(value).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text).timestamp()


def call(fed: Federation) -> int:
    taka, aizu = fed.nodes["takamatsu"], fed.nodes["aizu"]
    result = call_rest(
        taka.client_url,
        SubsystemId.parse(taka.client_id),
        ServiceId.parse(f"{aizu.member}/residents/residents"),
        "/1001",
    )
    return result.status


def test_two_workers_share_the_ports_and_the_counts(fed: Federation) -> None:
    taka = fed.nodes["takamatsu"]
    proc = serve_workers(fed, taka, 2)
    assert len(children(proc.pid)) == 2
    marker = time.time() - 1
    statuses = [call(fed) for _ in range(40)]
    assert statuses == [200] * 40

    per_chain = chains_since(taka, marker)
    assert sum(per_chain.values()) == 40
    assert len(per_chain) == 2, f"one worker took every connection: {per_chain}"

    with urllib.request.urlopen(
        f"{taka.admin_url}/metrics", timeout=30, context=taka.admin_context()
    ) as resp:
        body = resp.read()
    served = sum(
        float(m.group(1))
        for m in re.finditer(
            r'^secnode_requests_total\{[^}]*direction="outbound"[^}]*result="ok"[^}]*\} (\S+)$',
            body.decode(),
            re.M,
        )
    )
    assert served >= 40, body.decode()[:2000]


def test_a_killed_worker_is_restarted_and_calls_go_on(fed: Federation) -> None:
    taka = fed.nodes["takamatsu"]
    proc = fed.processes["node-takamatsu"]
    before = children(proc.pid)
    assert len(before) == 2
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: len(children(proc.pid) - {victim}) == 2, 30, "the supervisor to start a new worker"
    )
    fed.wait_healthy(taka, timeout=60)
    assert [call(fed) for _ in range(10)] == [200] * 10
    text = log_text(fed, taka)
    assert re.search(rf"worker \d \(pid {victim}\) exited with -9 after .* restarting", text), text


def test_sigkill_of_the_supervisor_leaves_no_worker_behind(fed: Federation) -> None:
    taka = fed.nodes["takamatsu"]
    proc = fed.processes["node-takamatsu"]
    workers = children(proc.pid)
    assert len(workers) == 2
    proc.kill()
    proc.wait(10)
    wait_for(lambda: not any(alive(w) for w in workers), 15, "orphaned workers to stop")
    assert "supervisor (pid" in log_text(fed, taka)


def test_sigterm_stops_every_worker(fed: Federation) -> None:
    taka = fed.nodes["takamatsu"]
    proc = serve_workers(fed, taka, 2)
    workers = children(proc.pid)
    proc.terminate()
    assert proc.wait(40) == 0
    assert not any(alive(w) for w in workers)
    assert "stopped (2 workers)" in log_text(fed, taka)
    fed.processes.pop("node-takamatsu", None)
