"""Server-side sessions: the cookie holds a random token, the database its SHA-256 and the
session's CSRF token, so a stolen database yields no usable cookie.

Used by the console (``kind="console"``, principal = user name) and by the disclosure page
(``kind="resident"``, principal = subject reference, after a valid access code).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select

from secnode.console import clock
from secnode.console.tables import sessions


@dataclass(frozen=True)
class Session:
    kind: str
    principal: str
    csrf: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(engine: Engine, kind: str, principal: str, lifetime: dt.timedelta) -> tuple[str, str]:
    """A new session; returns (cookie token, CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = clock.now()
    with engine.begin() as conn:
        conn.execute(delete(sessions).where(sessions.c.expires_at < clock.text(now)))
        conn.execute(
            insert(sessions).values(
                token_sha256=_digest(token),
                kind=kind,
                principal=principal,
                csrf=csrf,
                created_at=clock.text(now),
                expires_at=clock.text(now + lifetime),
            )
        )
    return token, csrf


def lookup(engine: Engine, kind: str, token: str | None) -> Session | None:
    """The live session of this kind for ``token``, or None."""
    if not token:
        return None
    with engine.connect() as conn:
        row = conn.execute(
            select(sessions).where(
                sessions.c.token_sha256 == _digest(token), sessions.c.kind == kind
            )
        ).first()
    if row is None or row.expires_at < clock.text(clock.now()):
        return None
    return Session(row.kind, row.principal, row.csrf)


def end(engine: Engine, token: str | None) -> None:
    if token:
        with engine.begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.token_sha256 == _digest(token)))


def csrf_ok(expected: str | None, given: object) -> bool:
    """Constant-time comparison; a missing or non-text token never matches."""
    if not expected or not isinstance(given, str):
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
