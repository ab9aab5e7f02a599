"""Issue 12 item 8: ``/health`` says so when the message log cannot write, and recovers.

The client node's log database lives on a small tmpfs that the test mounts and
then fills up: SQLite's commits fail with a real ``ENOSPC`` ("database or disk
is full"), as on a full disk. (A read-only file would not do: the tests run as
root, which ignores file permissions, and a mounted file system cannot be
remounted read-only while the node holds the database open.) Needs the right
to mount; skipped otherwise.
"""

from __future__ import annotations

import errno
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.common import wait_until
from tests.support.logfed import LogFederation, Reply, build_log_federation

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs under ``tmp_path`` (unmounted at teardown)."""
    mount_point = tmp_path / "logdisk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


class DiskFiller:
    """Keeps a file system full: a thread appends to a file whenever there is room."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stop = threading.Event()
        self._full = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="disk-filler", daemon=True)

    def __enter__(self) -> DiskFiller:
        self._thread.start()
        assert self._full.wait(10), "the disk did not fill up"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.path.unlink()

    def _fill(self) -> None:
        chunk = b"\xa5" * 4096
        with open(self.path, "ab", buffering=0) as out:
            while not self._stop.is_set():
                try:
                    out.write(chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    self._full.set()
                    self._stop.wait(0.01)  # space freed by a checkpoint is taken back


@pytest.fixture
def lf(tmp_path: Path, small_disk: Path) -> Iterator[LogFederation]:
    fed = build_log_federation(
        tmp_path / "fed", node_config={"messagelog": {"archive_interval": 0}}
    )
    try:
        fed.takamatsu.set_config("messagelog", "database", f"sqlite:///{small_disk}/messagelog.db")
        fed.start_nodes()
        yield fed
    finally:
        fed.close()


def refused_for_the_log(lf: LogFederation) -> Reply | None:
    reply = lf.call()
    return reply if reply.status != 200 else None


def write_reasons(health: dict[str, object]) -> list[str]:
    reasons = health.get("reasons")
    assert isinstance(reasons, list)
    return [r for r in reasons if "message log: cannot store records" in r]


def test_health_reports_a_log_that_cannot_write_and_recovers(
    lf: LogFederation, small_disk: Path
) -> None:
    assert lf.call().status == 200
    assert lf.takamatsu.health()[0] == 200
    with DiskFiller(small_disk / "filler"):
        refused = wait_until(lambda: refused_for_the_log(lf), 30, "a message refused")
        assert refused.error.endswith(".MessageLogFailed"), refused.body
        code, health = lf.takamatsu.health()
        assert code == 503, health
        reasons = write_reasons(health)
        assert reasons and "full" in reasons[0], health["reasons"]
        writing = health["messagelog"]["writing"]
        assert writing["ok"] is False and writing["failing_since"] and writing["last_error"]
        assert "secnode_messagelog_write_failing 1.0" in lf.takamatsu.metrics()
    # Room again, and no traffic at all (a balancer has taken the node out): the probe
    # write alone brings /health back, then messages are logged again.
    wait_until(lambda: lf.takamatsu.health()[0] == 200, 15, "/health to recover")
    code, health = lf.takamatsu.health()
    assert not write_reasons(health) and health["messagelog"]["writing"]["ok"] is True
    assert health["messagelog"]["writing"]["probes"] >= 1
    assert lf.call().status == 200
    assert "secnode_messagelog_write_failing 0.0" in lf.takamatsu.metrics()
