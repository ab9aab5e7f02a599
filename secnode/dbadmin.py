"""What ``secnode db`` does: the revisions of the node's two databases, and upgrading them.

A node has up to two schemas: the node database (Alembic, ``secnode/migrations``) and,
on SQLite or with ``[messagelog] database``, the message log's own database (Alembic,
``secnode/messagelog/migrations``). ``secnode serve`` migrates both as it starts; this is
the explicit step an operator runs (and reads) after installing a new version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from secnode.config import NodeDir
from secnode.messagelog import database as logdb
from secnode.store import db


@dataclass(frozen=True)
class SchemaState:
    """One database: where it is, the revision it is at (before/after) and the newest."""

    name: str
    url: str
    before: str | None
    after: str | None
    head: str

    @property
    def current(self) -> bool:
        return self.after == self.head

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "current": self.current}


def _log_state(nd: NodeDir, upgrade: bool) -> SchemaState | None:
    if not logdb.is_separate(nd):
        return None  # the log's tables are in the node database, migrated with it
    url = logdb.log_db_url(nd)
    engine = db.make_engine(url)
    try:
        if upgrade:
            before, after = logdb.migrate_log(nd, engine)
        elif not logdb.has_log_database(nd):
            before = after = None
        else:
            before = after = db.current_revision(engine, logdb.LOG_SCHEMA)
    finally:
        engine.dispose()
    return SchemaState(
        logdb.LOG_SCHEMA.name, db.redact(url), before, after, db.head_revision(logdb.LOG_SCHEMA)
    )


def schema_states(nd: NodeDir, upgrade: bool = False) -> list[SchemaState]:
    """The node database and (if separate) the log database; upgraded first if asked."""
    engine = db.make_engine(nd.db_url)
    try:
        if upgrade:
            before, after = db.migrate(engine)
        else:
            before = after = db.current_revision(engine)
    finally:
        engine.dispose()
    states = [
        SchemaState(db.NODE_SCHEMA.name, db.redact(nd.db_url), before, after, db.head_revision())
    ]
    log_state = _log_state(nd, upgrade)
    if log_state is not None:
        states.append(log_state)
    return states
