"""Time as the console stores it: UTC ISO-8601 text (sortable, the same on SQLite and
PostgreSQL)."""

from __future__ import annotations

import datetime as dt


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def text(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="seconds")


def parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)
