"""Database edge of the registry: engines, migrations, transactions with their audit row.

Every administrative change runs inside :meth:`Store.change`, which writes the
audit entry in the same transaction as the change: either both are committed or
neither is, so the audit trail never claims something that did not happen and
never misses something that did.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from central.errors import RegistryError
from central.models import AuditEntry

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The newest revision in central/migrations/versions. Checked against Alembic's own
# view by a test; lets every CLI call skip importing Alembic when nothing is to do.
SCHEMA_HEAD = "0002"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30})

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

            return engine
        return create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise RegistryError(f"cannot use database URL {redact(url)}: {exc}") from exc


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as the scheme only
        return url.split(":", 1)[0] + ":..."


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (Alembic, run in-process)."""
    try:
        if current_revision(engine) == SCHEMA_HEAD:
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        # configparser treats '%' as interpolation; URLs carry %-escapes (options, passwords)
        url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
        cfg.set_main_option("sqlalchemy.url", url)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except OperationalError as exc:
        raise RegistryError(
            f"cannot open database {redact(str(engine.url))}: {one_line(exc)}"
        ) from exc


def one_line(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc)
    return text_.strip().splitlines()[0] if text_.strip() else type(exc).__name__


class Store:
    """The registry database; create one per process and share it."""

    def __init__(self, url: str, *, run_migrations: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if run_migrations:
            migrate(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries only; rolled back at the end."""
        try:
            with self._sessions() as session:
                yield session  # closing discards any transaction but keeps loaded values
        except OperationalError as exc:
            raise RegistryError(f"database error: {one_line(exc)}") from exc

    @contextmanager
    def change(
        self, operator: str, action: str, details: dict[str, Any] | None = None
    ) -> Iterator[tuple[Session, dict[str, Any]]]:
        """One transaction for an admin change plus its audit row.

        The caller may add to the yielded ``details`` dict (e.g. a new id)
        before the block ends; the audit row is written just before commit.
        Any exception rolls back both.
        """
        audit_details: dict[str, Any] = dict(details or {})
        try:
            with self._sessions() as session, session.begin():
                yield session, audit_details
                session.flush()
                session.add(
                    AuditEntry(at=now(), operator=operator, action=action, details=audit_details)
                )
        except IntegrityError as exc:
            raise RegistryError(f"{action} refused by the database: {one_line(exc)}") from exc
        except OperationalError as exc:
            raise RegistryError(f"database error: {one_line(exc)}") from exc

    def audit(self, limit: int = 100) -> list[AuditEntry]:
        with self.read() as session:
            rows = session.scalars(
                select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
            ).all()
            return list(reversed(rows))
