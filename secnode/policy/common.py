"""Small helpers shared by the policy store, decision point and commands."""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
from typing import Any

ACTOR_ENV = "SECNODE_ACTOR"


def utc_text(value: dt.datetime | None = None) -> str:
    """Canonical UTC text ``2026-04-01T09:30:00.000000Z`` (sortable, exact)."""
    when = value or dt.datetime.now(dt.UTC)
    if when.tzinfo is None:
        raise ValueError("time must be timezone-aware")
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_utc(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def add_years(when: dt.datetime, years: int) -> dt.datetime:
    """``when`` plus whole years (29 February falls back to 28 February)."""
    try:
        return when.replace(year=when.year + years)
    except ValueError:
        return when.replace(year=when.year + years, day=28)


def canonical(obj: Any) -> str:
    """Canonical JSON (sorted keys, no whitespace, UTF-8 kept): what digests are taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def actor(explicit: str | None = None) -> str:
    """Who makes a registry change: ``--by``, else ``$SECNODE_ACTOR``, else the OS user."""
    if explicit:
        return explicit
    env = os.environ.get(ACTOR_ENV)
    if env:
        return env
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
