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

A database other than the node's has an Alembic environment of its own
(``secnode/messagelog/migrations``, revision table ``mlog_alembic_version``).
Databases made before it existed (``create_all``, no revision row) are stamped
at its first revision, which is that schema, and then upgraded.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, make_url

from secnode.config import NodeDir
from secnode.messagelog import tables
from secnode.store import db

LOG_FILE = "messagelog.db"
LOG_SCHEMA = db.Schema(
    "message log database",
    Path(__file__).resolve().parent / "migrations",
    "mlog_alembic_version",
)
#: The schema ``create_all`` made before the log database had migrations.
LEGACY_BASELINE = ("0001_mlog", tuple(sorted(tables.metadata.tables)))


def log_db_url(nd: NodeDir) -> str:
    """The message log's database URL for node directory ``nd``."""
    explicit = nd.config.messagelog.database
    if explicit:
        return explicit
    node_url = nd.db_url
    if node_url.startswith("sqlite"):
        return f"sqlite:///{nd.path / LOG_FILE}"
    return node_url


def is_separate(nd: NodeDir) -> bool:
    """True when the log has a database of its own (not the node's, which holds it itself)."""
    return log_db_url(nd) != nd.db_url


def migrate_log(nd: NodeDir, engine: Engine) -> tuple[str | None, str | None]:
    """Bring a separate log database to the newest revision: (before, after)."""
    return db.migrate(engine, LOG_SCHEMA, baseline=LEGACY_BASELINE)


def open_log_engine(nd: NodeDir, create: bool = True) -> Engine:
    """An engine on the log's database, migrated unless ``create`` is false (the
    auditor's ``verify`` only reads). The node's own database is migrated by Alembic
    when the node is opened, so nothing is done when the log lives there."""
    engine = db.make_engine(log_db_url(nd))
    if create and is_separate(nd):
        migrate_log(nd, engine)
    return engine


#: Columns added to ``mlog_records`` after its first release (Alembic revision 0006 adds
#: them to the node's own database); a separate log database gets them here.
def has_log_database(nd: NodeDir) -> bool:
    """False for a SQLite log file that does not exist (a node that never logged)."""
    url = log_db_url(nd)
    if not url.startswith("sqlite"):
        return True
    database = make_url(url).database
    return database is not None and Path(database).exists()
