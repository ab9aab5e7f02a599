"""The message log as the node's :class:`~secnode.proxy.hooks.EventSink`, and its background tasks.

``record(event)`` is awaited on the message path before the node forwards a
request or answers: it returns once the record is committed (group commit, see
:mod:`secnode.messagelog.writer`) and raises :class:`XRoadError` when the
message must be refused instead: the record could not be stored, or, for a new
request, time-stamping has been failing for longer than the acceptable failure
period. Refusals are always logged (they are how an auditor sees them).

:func:`attach` wires it into a :class:`~secnode.app.runtime.NodeRuntime`: its own
engine (so the writer's SQLite connection can run without auto-checkpoints),
the writer, the time-stamping task, the scheduled archive job and, on SQLite,
the checkpoint task. ``close()`` (called by ``RunningNode.stop``) stops the
tasks after flushing what is queued.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import Engine

from certs import keys
from secnode.core.errors import XRoadError
from secnode.core.messagelog import RecordError
from secnode.core.witness import LogPosition
from secnode.messagelog.archiver import Archiver
from secnode.messagelog.bodyfiles import BODIES_DIR, BodyStore
from secnode.messagelog.checkpoint import Checkpointer, disable_autocheckpoint
from secnode.messagelog.convert import draft_from_event
from secnode.messagelog.database import open_log_engine
from secnode.messagelog.stamper import Stamper
from secnode.messagelog.writer import LogWriteError, LogWriter
from secnode.proxy.hooks import ExchangeEvent
from secnode.proxy.spool import Spool

if TYPE_CHECKING:
    from secnode.app.runtime import NodeRuntime

log = logging.getLogger("secnode.messagelog")

#: X-Road-style codes for "the message log stops exchange" (client node / provider node).
CLIENT_TIMESTAMPING_FAILED = "Server.ClientProxy.TimestampingFailed"
SERVER_TIMESTAMPING_FAILED = "Server.ServerProxy.TimestampingFailed"
CLIENT_LOG_FAILED = "Server.ClientProxy.MessageLogFailed"
SERVER_LOG_FAILED = "Server.ServerProxy.MessageLogFailed"

#: Seconds between two probe writes while the log cannot write (see ``LogWriter.probe``).
PROBE_INTERVAL = 2.0

_CLIENT_SIDE = frozenset({"request_out", "response_in"})
_NEW_REQUESTS = frozenset({"request_out", "request_in"})


class MessageLog:
    """EventSink writing the tamper-evident log (see module docstring)."""

    def __init__(self, rt: NodeRuntime, engine: Engine) -> None:
        self.rt = rt
        self.engine = engine
        cfg = rt.config.messagelog
        node_id = str(rt.node.node_id)
        sqlite = engine.dialect.name == "sqlite"
        self.writer = LogWriter(
            engine, node_id, on_connect=disable_autocheckpoint if sqlite else None
        )
        self.stamper = Stamper(
            engine,
            node_id,
            lambda: self.writer.chain_ids,
            lambda: rt.conf,
            cfg.timestamp_batch_size,
            cfg.timestamping_interval,
        )
        self.checkpointer = Checkpointer(engine) if sqlite else None
        self.bodies = BodyStore(rt.node.path / BODIES_DIR)
        self.last_archive: dict[str, Any] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # ----- EventSink ---------------------------------------------------------------------------
    async def record(self, event: ExchangeEvent) -> LogPosition:
        client_side = event.direction in _CLIENT_SIDE
        if event.direction in _NEW_REQUESTS:
            why = self.stamper.refusal()
            if why is not None:
                self.rt.count("messagelog_refused_total")
                code = CLIENT_TIMESTAMPING_FAILED if client_side else SERVER_TIMESTAMPING_FAILED
                raise XRoadError(code, why)
        try:
            draft = draft_from_event(event)
            if draft.body_file:  # durable before the record that names it is committed
                assert isinstance(event.body, Spool)
                await asyncio.to_thread(self.bodies.put, event.body)
            written = await self.writer.append(draft)
        except OSError as exc:
            self.rt.count("messagelog_write_errors_total")
            raise XRoadError(
                CLIENT_LOG_FAILED if client_side else SERVER_LOG_FAILED,
                f"message log: the body file could not be stored ({exc}); "
                "the message was not processed",
            ) from exc
        except (LogWriteError, RecordError) as exc:
            self.rt.count("messagelog_write_errors_total")
            raise XRoadError(
                CLIENT_LOG_FAILED if client_side else SERVER_LOG_FAILED,
                f"message log: {exc}; the message was not processed",
            ) from exc
        self.rt.count("messagelog_records_total")
        return LogPosition(written.chain_id, written.seq, written.record_hash)

    # ----- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.writer.start()
        self._spawn(self.stamper.run(), "mlog-stamper")
        self._spawn(self.stamper.watch(), "mlog-backlog")
        self._spawn(self._probe_loop(), "mlog-probe")
        if self.checkpointer is not None:
            self._spawn(self.checkpointer.run(lambda: self.writer.stats.commits), "mlog-checkpoint")
        if self.rt.config.messagelog.archive_interval > 0:
            self._spawn(self._archive_loop(), "mlog-archiver")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro, name=name))

    name = "messagelog"  # its /health section (secnode.app.extensions.Extension)

    async def close(self) -> None:
        await self.writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.stamper.close()
        if self.checkpointer is not None:
            await asyncio.to_thread(self.checkpointer.close)
        self.engine.dispose()

    async def _probe_loop(self) -> None:
        """While writes fail, try one every few seconds: /health recovers without traffic."""
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                await self.writer.probe()
            except Exception:
                log.exception("message log probe failed unexpectedly")

    def write_failure(self) -> str | None:
        """Why the log cannot store records now (None: the last write succeeded)."""
        stats = self.writer.stats
        if stats.failing_since is None:
            return None
        return (
            f"cannot store records since {_iso_time(stats.failing_since)}: every message "
            f"is refused "
            f"({stats.failures} failed writes): {stats.last_error}"
        )

    # ----- archiving ---------------------------------------------------------------------------
    def archiver(self) -> Archiver | None:
        rt = self.rt
        if rt.sign_cert is None:
            return None
        signer = keys.SoftwareSigner.from_file(rt.sign_key_file(), rt.passphrase)
        return Archiver(
            self.engine,
            str(rt.node.node_id),
            rt.node.path / rt.config.messagelog.archive_dir,
            rt.sign_cert.cert,
            signer,
            rt.conf.ca_certs if rt.conf else (),
            bodies=self.bodies,
        )

    def archive_now(self) -> dict[str, Any]:
        """One archive run plus retention purge (blocking; run it in a thread)."""
        archiver = self.archiver()
        if archiver is None:
            return {"error": "no sign certificate to sign archives with"}
        written = archiver.run()
        purged = archiver.purge(self.rt.config.messagelog.retention_days)
        return {
            "at": dt.datetime.now(dt.UTC).isoformat(),
            "archives": len(written),
            "records": sum(a.records for a in written),
            "purged": purged,
        }

    async def _archive_loop(self) -> None:
        while True:
            await asyncio.sleep(self.rt.config.messagelog.archive_interval)
            try:
                self.last_archive = await asyncio.to_thread(self.archive_now)
            except Exception as exc:
                log.exception("archive run failed")
                self.last_archive = {"at": dt.datetime.now(dt.UTC).isoformat(), "error": str(exc)}

    # ----- /health and /metrics ----------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """The ``messagelog`` section of ``/health``; ``reasons`` make the node unhealthy."""
        s = self.stamper.state

        def iso(value: dt.datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        refusal = self.stamper.refusal()
        warnings = []
        if s.last_error is not None and refusal is None:
            warnings.append(f"time-stamping failing: {s.last_error}")
        failing_since = s.oldest_unstamped if refusal else s.failing_since
        reasons = [f"message log: {why}" for why in (self.write_failure(), refusal) if why]
        stats = self.writer.stats
        return {
            "chain_id": self.writer.chain_id,
            "records_written": self.writer.stats.records,
            "commits": self.writer.stats.commits,
            "commits_on_event_loop": self.writer.stats.inline_commits,
            "write_failures": self.writer.stats.failures,
            "writing": {
                "ok": stats.failing_since is None,
                "failing_since": _iso_time(stats.failing_since),
                "last_error": stats.last_error,
                "probes": stats.probes,
            },
            "commit_ms_avg": round(
                1000 * self.writer.stats.commit_seconds / max(1, self.writer.stats.commits), 3
            ),
            "queue_ms_avg": round(
                1000 * self.writer.stats.wait_seconds / max(1, self.writer.stats.commits), 3
            ),
            "stamping": {
                "backlog": s.backlog,
                "last_success": iso(s.last_success),
                "last_attempt": iso(s.last_attempt),
                "failing_since": iso(failing_since),
                "oldest_unstamped": iso(s.oldest_unstamped),
                "last_error": s.last_error,
                "refusing": refusal is not None,
                "interval_seconds": self.stamper.interval(),
                "batches": s.batches,
            },
            "archiving": self.last_archive,
            "reasons": reasons,
            "warnings": warnings,
        }

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Gauges read at scrape time (counters go through ``rt.count``). The backlog is as
        of the last stamping round; its age is computed now."""
        s = self.stamper.state
        now = dt.datetime.now(dt.UTC)
        oldest = s.oldest_unstamped
        gauges = [
            ("stamp_backlog", "Records waiting for a time-stamp.", float(s.backlog)),
            (
                "stamp_backlog_age_seconds",
                "Seconds the oldest record without a time-stamp has waited (0: none).",
                (now - oldest).total_seconds() if oldest else 0.0,
            ),
            (
                "stamp_failure_period_seconds",
                "How long stamping may fail before new messages are refused (the "
                "configuration's acceptable period).",
                float(self.stamper.failure_period()),
            ),
            (
                "last_stamp_age_seconds",
                "Seconds since the last successful time-stamping (-1: none yet).",
                (now - s.last_success).total_seconds() if s.last_success else -1.0,
            ),
            (
                "stamp_failing_seconds",
                "Seconds the oldest unstamped record has waited while stamping fails (0: not "
                "failing).",
                (now - s.failing_since).total_seconds() if s.failing_since else 0.0,
            ),
            (
                "refusing",
                "1 while new messages are refused (stamping failed for longer than the "
                "acceptable period).",
                1.0 if self.stamper.refusal() else 0.0,
            ),
            (
                "write_failing",
                "1 while the message log cannot store records (every message is refused).",
                0.0 if self.writer.stats.failing_since is None else 1.0,
            ),
            ("batches", "Time-stamp batches stored by this process.", float(s.batches)),
        ]
        for name, help_text, value in gauges:
            yield GaugeMetricFamily(f"secnode_messagelog_{name}", help_text, value=value)


def _iso_time(unix: float | None) -> str | None:
    return None if unix is None else dt.datetime.fromtimestamp(unix, dt.UTC).isoformat()


async def attach(rt: NodeRuntime) -> MessageLog | None:
    """Make the message log ``rt``'s sink (unless ``[messagelog] enabled = false``)."""
    if not rt.config.messagelog.enabled:
        log.warning("message log disabled by [messagelog] enabled = false: nothing is logged")
        return None
    engine = open_log_engine(rt.node.dir)
    sink = MessageLog(rt, engine)
    await sink.stamper.refresh()  # a restarted node refuses from its first request if overdue
    sink.start()
    rt.sink = sink
    rt.extensions.append(sink)
    log.info("message log: writing chain %s", sink.writer.chain_id)
    return sink
