"""What the console's pages need from the running node, handed in by ``secnode serve``.

The console does not import the node's runtime (the app package imports the console):
``serve`` passes the node, its passphrase (to sign evidence bundles), a health snapshot
function and a hook to call after a change (reload the in-memory service table).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from secnode.console.ratelimit import AttemptLimiter
from secnode.home import NodeHome

LOGIN_LIMIT, LOGIN_WINDOW = 5, 300.0  # failed logins per user name and per address
SESSION_LIFETIME = dt.timedelta(hours=8)


async def _no_health() -> dict[str, Any]:
    return {"status": "unknown"}


@dataclass
class VerifyJob:
    """The one "verify now" run of this process: who started it, when, and its result."""

    started_by: str
    started_at: dt.datetime
    task: asyncio.Task[dict[str, Any]]
    finished_at: dt.datetime | None = None


@dataclass
class ConsoleContext:
    node: NodeHome
    passphrase: bytes
    health: Callable[[], Awaitable[dict[str, Any]]] = _no_health
    on_change: Callable[[], None] = lambda: None
    logins: AttemptLimiter = field(
        default_factory=lambda: AttemptLimiter(LOGIN_LIMIT, LOGIN_WINDOW)
    )
    session_lifetime: dt.timedelta = SESSION_LIFETIME
    verify_job: VerifyJob | None = None


CONTEXT = web.AppKey("console_context", ConsoleContext)
