"""The message log: search, one record with its batch and proof, verify now, and one
exchange's evidence bundle (what ``secnode log search|show|verify|export`` do)."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from secnode.console import audit
from secnode.console.context import VerifyJob
from secnode.console.render import download, html
from secnode.console.security import BASE, context, form_of, page, user_of
from secnode.home import NodeHome
from secnode.messagelog import evidence
from secnode.messagelog.store import SearchFilter

log = logging.getLogger("secnode.console")
FIELDS = ("client", "service", "message_id", "user_id")
LIMIT = 200


class SearchError(evidence.EvidenceError):
    """A search field the console cannot use (a time that does not parse)."""


def _time(text: str, what: str) -> dt.datetime | None:
    """A ``datetime-local`` value (taken as UTC) or ISO-8601 with an offset."""
    if not text.strip():
        return None
    try:
        at = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise SearchError(f"{what}: not a date and time ({text!r})") from None
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def _search(node: NodeHome, criteria: SearchFilter) -> list[dict[str, Any]]:
    with evidence.opened(node) as log:
        return [evidence.record_json(r) for r in evidence.search(log, criteria, LIMIT, True)]


async def log_page(request: web.Request) -> web.Response:
    q = request.query
    values = {name: q.get(name, "").strip() for name in (*FIELDS, "since", "until")}
    searched = any(values.values()) or "search" in q
    rows: list[dict[str, Any]] = []
    if searched:
        criteria = SearchFilter(
            since=_time(values["since"], "from"),
            until=_time(values["until"], "until"),
            **{name: values[name] or None for name in FIELDS},
        )
        rows = await asyncio.to_thread(_search, context(request).node, criteria)
    return html("log.html", **page(request, q=values, rows=rows, searched=searched, limit=LIMIT))


def _show(node: NodeHome, record_id: str) -> dict[str, Any]:
    with evidence.opened(node) as log:
        return evidence.show(log, record_id)


async def record_page(request: web.Request) -> web.Response:
    record = await asyncio.to_thread(_show, context(request).node, request.match_info["id"])
    pretty = {
        k: json.dumps(record.get(k), indent=2, ensure_ascii=False) for k in ("batch", "proof")
    }
    return html("record.html", **page(request, record=record, pretty=pretty))


async def verify(request: web.Request) -> web.StreamResponse:
    """Start the offline verifier over the node's database and archives (one run at a time);
    its page shows the run's progress and then the result."""
    ctx, user = context(request), user_of(request)
    job = ctx.verify_job
    if job is None or job.task.done():
        node_dir = str(ctx.node.path)

        def run() -> dict[str, Any]:
            return evidence.audit(node_dir, [], None, None, False).to_json()

        job = VerifyJob(user.username, dt.datetime.now(dt.UTC), asyncio.create_task(_run(run)))
        job.task.add_done_callback(functools.partial(_finished, job))
        ctx.verify_job = job
        await asyncio.to_thread(
            audit.record, ctx.node.engine, user.username, user.role, "log.verify", "message log"
        )
    raise web.HTTPSeeOther(f"{BASE}/log/verify")


async def _run(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    return await asyncio.to_thread(work)


def _finished(job: VerifyJob, _task: object) -> None:
    job.finished_at = dt.datetime.now(dt.UTC)


async def verify_status(request: web.Request) -> web.Response:
    job = context(request).verify_job
    if job is None:
        raise web.HTTPSeeOther(f"{BASE}/log")
    until = job.finished_at or dt.datetime.now(dt.UTC)
    values = {"job": job, "elapsed": round((until - job.started_at).total_seconds())}
    if not job.task.done():
        return html("verify.html", **page(request, running=True, report=None, text="", **values))
    error = job.task.exception()
    if error is not None:
        log.warning("verify now failed: %s", error)
        report: dict[str, Any] = {"ok": False, "error": str(error)}
    else:
        report = job.task.result()
    text = json.dumps(report, indent=2, ensure_ascii=False)
    return html("verify.html", **page(request, running=False, report=report, text=text, **values))


def _export(node: NodeHome, passphrase: bytes, message_id: str, client: str | None) -> bytes:
    with tempfile.TemporaryDirectory() as tmp, evidence.opened(node) as log:
        out = Path(tmp) / "bundle"
        evidence.export(log, message_id, client, lambda: passphrase, str(out))
        return out.read_bytes()


async def export(request: web.Request) -> web.Response:
    """One exchange's signed evidence bundle as a download (``secnode log verify`` reads it)."""
    ctx, user, form = context(request), user_of(request), form_of(request)
    message_id, client = form.get("message_id", "").strip(), form.get("client", "").strip()
    if not message_id:
        raise evidence.EvidenceError("give the message id of the exchange")
    blob = await asyncio.to_thread(_export, ctx.node, ctx.passphrase, message_id, client or None)
    await asyncio.to_thread(
        audit.record,
        ctx.node.engine,
        user.username,
        user.role,
        "log.export",
        message_id,
        "ok",
        {"client": client, "bytes": len(blob)},
    )
    return download(blob, "evidence.zip", "application/zip")
