"""``secnode serve --workers N``: N node processes on the same ports, one supervisor.

Python runs one message at a time per process, so one process uses one core. With
``N > 1`` the ``serve`` process becomes a supervisor that starts N workers (fresh
interpreters, ``spawn``; the passphrase reaches them through the start pipe, never
argv or the environment). Each worker binds the client and node-to-node ports with
``SO_REUSEPORT`` and the kernel spreads connections over them. What must be shared
already lives in the node database, as for several ``serve`` processes on one
database (docs/operations.md "Several processes"): the replay window, quotas, the
OCSP responses, the configuration version; each worker writes its own log chain.

The admin interface (``/health``, ``/metrics``, the console) and the disclosure page
run in worker 0 only. ``/metrics`` there sums the message-path counters of all
workers through ``prometheus_client``'s multiprocess mode (one directory of
memory-mapped files per run, in the node's home, emptied at start).

A worker that dies is restarted; a worker that keeps dying within seconds of its
start (a port taken, a broken configuration) stops the node with an error, rather
than restarting forever. A worker whose supervisor died (SIGKILL) stops by itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from certs import logs
from certs.errors import SecnodeError
from secnode.app.metrics import METRICS_DIR_ENV
from secnode.app.serve import WorkerRole
from secnode.home import NodeHome

log = logging.getLogger("secnode.app.workers")

#: A worker that dies sooner than this after its start counts as a failed start.
QUICK_DEATH_SECONDS = 10.0
#: Failed starts in a row of one worker after which the node stops.
MAX_QUICK_DEATHS = 5
#: How long stopping workers may take before they are killed.
STOP_GRACE_SECONDS = 20.0


class WorkersError(SecnodeError):
    """The node could not keep its workers running."""

    code = "workers"


def default_workers() -> int:
    """The number of cores this process may run on (``serve --workers`` default)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def metrics_dir(node: NodeHome) -> Path:
    return node.path / "run" / "metrics"


def _worker_main(
    node_path: str,
    passphrase: bytes,
    role: WorkerRole,
    log_format: str,
    log_level: str,
    supervisor_pid: int,
) -> None:
    """A worker's body (runs in a fresh interpreter)."""
    from secnode.app import serve

    logs.configure(log_format, log_level)
    node = NodeHome.open(Path(node_path))
    serve.serve_forever(node, passphrase, role=role, supervisor_pid=supervisor_pid)


@dataclass
class _Slot:
    role: WorkerRole
    process: multiprocessing.process.BaseProcess | None = None
    started: float = 0.0
    quick_deaths: int = 0


class Supervisor:
    """Starts, watches and stops the workers of one node."""

    def __init__(
        self, node: NodeHome, passphrase: bytes, count: int, log_format: str, log_level: str
    ) -> None:
        self.node = node
        self.passphrase = passphrase
        self.log_format = log_format
        self.log_level = log_level
        self.slots = [_Slot(WorkerRole(i, count)) for i in range(count)]
        self.context = multiprocessing.get_context("spawn")
        self.stopping = threading.Event()

    def _start(self, slot: _Slot) -> None:
        args = (
            str(self.node.path),
            self.passphrase,
            slot.role,
            self.log_format,
            self.log_level,
            os.getpid(),
        )
        process = self.context.Process(
            target=_worker_main, args=args, name=f"secnode-worker-{slot.role.index}"
        )
        process.start()
        slot.process, slot.started = process, time.monotonic()
        log.info("worker %d started (pid %s)", slot.role.index, process.pid)

    def _reap(self, slot: _Slot) -> None:
        """Restart a dead worker; give up after repeated failed starts."""
        process = slot.process
        if process is None or process.is_alive() or self.stopping.is_set():
            return
        lived = time.monotonic() - slot.started
        slot.quick_deaths = slot.quick_deaths + 1 if lived < QUICK_DEATH_SECONDS else 0
        log.warning(
            "worker %d (pid %s) exited with %s after %.1f s; restarting",
            slot.role.index,
            process.pid,
            process.exitcode,
            lived,
        )
        if process.pid is not None:
            _mark_dead(process.pid)
        if slot.quick_deaths >= MAX_QUICK_DEATHS:
            raise WorkersError(
                f"worker {slot.role.index} failed {slot.quick_deaths} times in a row within "
                f"{QUICK_DEATH_SECONDS:.0f} s of its start; stopping (see its log lines above)"
            )
        time.sleep(min(5.0, 0.2 * 2**slot.quick_deaths))
        self._start(slot)

    def run(self) -> None:
        """Run until SIGTERM/SIGINT; raises :class:`WorkersError` if workers keep failing."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stopping.set())
        directory = metrics_dir(self.node)
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, mode=0o700)
        os.environ[METRICS_DIR_ENV] = str(directory)  # inherited by the spawned workers
        log.info("node %s: starting %d workers", self.node.node_id, len(self.slots))
        try:
            for slot in self.slots:
                self._start(slot)
            while not self.stopping.wait(0.5):
                for slot in self.slots:
                    self._reap(slot)
        finally:
            self.stop()

    def stop(self) -> None:
        self.stopping.set()
        running = [s.process for s in self.slots if s.process is not None]
        for process in running:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker pid %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join(5)
        log.info("node %s stopped (%d workers)", self.node.node_id, len(running))


def _mark_dead(pid: int) -> None:
    """Drop a dead worker's live-gauge files (its counters stay: they were counted)."""
    if os.environ.get(METRICS_DIR_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
