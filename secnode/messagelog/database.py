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

from sqlalchemy import Engine, make_url

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
    return engine


def has_log_database(nd: NodeDir) -> bool:
    """False for a SQLite log file that does not exist (a node that never logged)."""
    url = log_db_url(nd)
    if not url.startswith("sqlite"):
        return True
    database = make_url(url).database
    return database is not None and Path(database).exists()
