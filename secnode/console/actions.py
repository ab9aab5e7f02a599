"""Run one change for a console page: the library operation (in a thread), its audit entry
(ok or refused, with the reason) and the running node's reload hook."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from certs.errors import SecnodeError
from secnode.console import audit
from secnode.console.security import context, user_of

T = TypeVar("T")


async def change(
    request: web.Request,
    action: str,
    target: str,
    operation: Callable[..., T],
    *args: Any,
    detail: dict[str, Any] | None = None,
) -> T:
    ctx, user = context(request), user_of(request)
    engine = ctx.node.engine
    try:
        result = await asyncio.to_thread(operation, *args)
    except SecnodeError as exc:
        await asyncio.to_thread(
            audit.record,
            engine,
            user.username,
            user.role,
            action,
            target,
            "refused",
            {**(detail or {}), "reason": str(exc)},
        )
        raise
    await asyncio.to_thread(
        audit.record, engine, user.username, user.role, action, target, "ok", detail
    )
    await asyncio.to_thread(ctx.on_change)
    return result


def done(path: str, what: str) -> web.HTTPSeeOther:
    """Back to the page after a change (POST/redirect/GET), naming what was done."""
    separator = "&" if "?" in path else "?"
    return web.HTTPSeeOther(f"{path}{separator}done={what}")


#: The only texts a ``?done=`` parameter can show (nothing from the URL is echoed).
DONE = {
    "added": "Service added.",
    "edited": "Service changed.",
    "classified": "Classification stored.",
    "granted": "Access right granted.",
    "revoked": "Access right revoked.",
    "allowed": "Local system allowed.",
    "removed": "Rule removed.",
    "withdrawn": "Consent withdrawn.",
}


def done_message(request: web.Request) -> str | None:
    return DONE.get(request.query.get("done", ""))
