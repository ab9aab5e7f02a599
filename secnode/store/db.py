"""Engine creation and schema migration for the node database (SQLite WAL or PostgreSQL).

The same helpers serve the message log's own database (``secnode.messagelog.database``):
it has an Alembic environment of its own, told apart by its version table.
"""

from __future__ import annotations

import fcntl
import hashlib
import shlex
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from certs.errors import SecnodeError

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
VERSION_TABLE = "alembic_version"
POSTGRES_EXTRA = "pip install 'secnode[postgres]'"


class DatabaseError(SecnodeError):
    """The database cannot be reached, created or migrated; the message says what to do."""


@dataclass(frozen=True)
class Schema:
    """One Alembic environment: where its scripts are, which table records its revision."""

    name: str
    script_location: Path
    version_table: str = VERSION_TABLE


NODE_SCHEMA = Schema("node database", MIGRATIONS)


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split(":", 1)[0] + ":..."


def one_line(exc: BaseException) -> str:
    """The first line of a (DBAPI) error, without SQLAlchemy's background link."""
    text_ = str(getattr(exc, "orig", None) or exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__


def make_engine(url: str) -> Engine:
    """An engine with SQLite tuned for a log-heavy workload (WAL, NORMAL sync, busy wait)."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            return engine
        return create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise DatabaseError(
            f"the database driver for {redact(url)} is not installed ({exc}); "
            f"for PostgreSQL: {POSTGRES_EXTRA}"
        ) from exc
    except (ArgumentError, ValueError) as exc:
        raise DatabaseError(f"cannot use database URL {redact(url)}: {exc}") from exc


def createdb_command(url: URL) -> str:
    """The ``createdb`` line an operator runs to make the database ``url`` names."""
    argv = ["createdb"]
    if url.host:
        argv += ["-h", url.host]
    if url.port:
        argv += ["-p", str(url.port)]
    if url.username:
        argv += ["-U", url.username]
    argv.append(url.database or "")
    return shlex.join(argv)


def _missing_database(exc: OperationalError) -> bool:
    return "does not exist" in one_line(exc) and "database" in one_line(exc)


def ensure_database(url: str) -> bool:
    """Make sure the database ``url`` names exists; create a PostgreSQL one if allowed.

    Returns True when it was created here. A SQLite file is created by its first
    connection, so nothing is done for it. Refusals are one line and, when the
    database is missing and cannot be created here, name the ``createdb`` command.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"cannot use database URL {redact(url)}: {exc}") from exc
    if parsed.get_backend_name() != "postgresql":
        return False
    engine = make_engine(url)
    try:
        with engine.connect():
            return False
    except OperationalError as exc:
        if not _missing_database(exc):
            raise DatabaseError(f"cannot connect to {redact(url)}: {one_line(exc)}") from exc
    finally:
        engine.dispose()
    admin = make_engine(parsed.set(database="postgres").render_as_string(hide_password=False))
    name = parsed.database or ""
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            quoted = admin.dialect.identifier_preparer.quote(name)
            conn.execute(text(f"CREATE DATABASE {quoted}"))
    except (OperationalError, ProgrammingError) as exc:
        raise DatabaseError(
            f"database {name!r} does not exist on {redact(url)} and cannot be created from "
            f"here ({one_line(exc)}); create it, then run 'secnode init' again: "
            f"{createdb_command(parsed)}"
        ) from exc
    finally:
        admin.dispose()
    return True


def _alembic_config(engine: Engine, schema: Schema) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(schema.script_location))
    cfg.set_main_option("version_table", schema.version_table)
    # Alembic's config is a ConfigParser: a literal '%' (URL-encoded password or options)
    # must be doubled or it is read as interpolation syntax.
    url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Serialise migrations of one SQLite file between processes (PostgreSQL locks itself)."""
    database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    # The lock is beside nothing the operator sees (the SQLite file itself cannot be used:
    # closing any descriptor of it would drop SQLite's own POSIX locks in this process).
    digest = hashlib.sha256(str(Path(database).resolve()).encode()).hexdigest()[:24]
    lock_path = Path(tempfile.gettempdir()) / f"secnode-migrate-{digest}.lock"
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def current_revision(engine: Engine, schema: Schema = NODE_SCHEMA) -> str | None:
    """The revision the database is at (None: never migrated)."""
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": schema.version_table})
            return ctx.get_current_revision()
    except OperationalError as exc:
        raise DatabaseError(f"cannot open the {schema.name}: {one_line(exc)}") from exc


def head_revision(schema: Schema = NODE_SCHEMA) -> str:
    """The newest revision this version of secnode knows."""
    cfg = Config()
    cfg.set_main_option("script_location", str(schema.script_location))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None, f"no Alembic revisions in {schema.script_location}"
    return head


def has_tables(engine: Engine, *names: str) -> bool:
    with engine.connect() as conn:
        present = set(inspect(conn).get_table_names())
    return all(n in present for n in names)


def migrate(
    engine: Engine,
    schema: Schema = NODE_SCHEMA,
    target: str = "head",
    baseline: tuple[str, tuple[str, ...]] | None = None,
) -> tuple[str | None, str | None]:
    """Bring the schema to ``target``; returns (revision before, revision after).

    ``baseline`` = (revision, tables): a database that holds all those tables but no
    version row was built before the schema had migrations (``create_all``); it is
    stamped at that revision first, then upgraded like any other.
    """
    cfg = _alembic_config(engine, schema)
    try:
        with _migration_lock(engine):
            before = current_revision(engine, schema)
            stamp = before is None and baseline is not None and has_tables(engine, *baseline[1])
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                if stamp and baseline is not None:
                    command.stamp(cfg, baseline[0])
                    before = baseline[0]
                command.upgrade(cfg, target)
            return before, current_revision(engine, schema)
    except OperationalError as exc:
        raise DatabaseError(
            f"cannot migrate the {schema.name} {redact(str(engine.url))}: {one_line(exc)}"
        ) from exc
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot migrate the {schema.name}: {one_line(exc)}") from exc


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
