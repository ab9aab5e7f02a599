"""Where the message log lives: its own SQLite file, or the node's (PostgreSQL) database.

On SQLite the log gets a database file of its own (``messagelog.db`` beside
``secnode.db``, as X-Road keeps a separate ``messagelog`` database): SQLite
has one write lock per file, so sharing the node's file would make every log
commit queue behind the policy decision log and the node's own jobs (and
theirs behind the log), and the log's large WAL would set off checkpoints
inside other subsystems' commits. On PostgreSQL (row locks, no such
coupling) the log's tables are in the node's database, created by Alembic
revision ``0002_messagelog``. ``[messagelog] database`` names another
database explicitly.

A database other than the node's gets its tables from
:mod:`secnode.messagelog.tables` (``CREATE TABLE IF NOT EXISTS``), the same
definitions the Alembic revision spells out.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect, make_url, text

from secnode.config import NodeDir
from secnode.messagelog import tables
from secnode.store import db

LOG_FILE = "messagelog.db"


def log_db_url(nd: NodeDir) -> str:
    """The message log's database URL for node directory ``nd``."""
    explicit = nd.config.messagelog.database
    if explicit:
        return explicit
    node_url = nd.db_url
    if node_url.startswith("sqlite"):
        return f"sqlite:///{nd.path / LOG_FILE}"
    return node_url


def open_log_engine(nd: NodeDir, create: bool = True) -> Engine:
    """An engine on the log's database; its tables are created unless ``create`` is false
    (the auditor's ``verify`` only reads). The node's own database is migrated by
    Alembic when the node is opened, so nothing is created there."""
    url = log_db_url(nd)
    engine = db.make_engine(url)
    if create and url != nd.db_url:
        tables.metadata.create_all(engine, checkfirst=True)
        add_missing_columns(engine)
    return engine


#: Columns added to ``mlog_records`` after its first release (Alembic revision 0006 adds
#: them to the node's own database); a separate log database gets them here.
_ADDED_COLUMNS = (("witness", "TEXT"),)


def add_missing_columns(engine: Engine) -> None:
    """Bring a log database made by an earlier release up to the current table (nullable
    columns only, so old rows stay as they were and keep their hashes)."""
    present = {c["name"] for c in inspect(engine).get_columns(tables.records.name)}
    missing = [(name, kind) for name, kind in _ADDED_COLUMNS if name not in present]
    if not missing:
        return
    with engine.begin() as conn:
        for name, kind in missing:
            conn.execute(text(f"ALTER TABLE {tables.records.name} ADD COLUMN {name} {kind}"))


def has_log_database(nd: NodeDir) -> bool:
    """False for a SQLite log file that does not exist (a node that never logged)."""
    url = log_db_url(nd)
    if not url.startswith("sqlite"):
        return True
    database = make_url(url).database
    return database is not None and Path(database).exists()
