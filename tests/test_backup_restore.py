"""Backup of a serving node, restore on a fresh directory, exchange from the restored node;
schema upgrades of a node database left at the previous revision. SQLite and PostgreSQL.

Everything is real: the node serves as a process and answers real exchanges while
``secnode backup`` (a process of its own) copies it; the restored directory is checked
with ``secnode log verify`` and then serves the next exchange on the registered address.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, make_url, text

from secnode.messagelog.database import LOG_SCHEMA
from secnode.store import db
from tests.conftest import PG_URL_ENV, cli_env
from tests.support.common import wait_until
from tests.support.logfed import AIZU, LogFederation, build_log_federation, log_cli

pytestmark = pytest.mark.slow


def secnode(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``secnode ARGS`` as a real process (the operator's shell)."""
    proc = subprocess.run(
        [sys.executable, "-m", "secnode", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"secnode {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, str | None, str | None]]:
    """(name, node database URL or None for SQLite, a second empty database URL)."""
    if request.param == "sqlite":
        yield "sqlite", None, None
        return
    base = os.environ.get(PG_URL_ENV)
    if not base:
        pytest.skip(f"{PG_URL_ENV} not set (PostgreSQL tests need a server URL)")
    tag = secrets.token_hex(4)
    names = [f"i15_node_{tag}", f"i15_restored_{tag}"]
    urls = [make_url(base).set(database=n).render_as_string(hide_password=False) for n in names]
    try:
        yield "postgresql", urls[0], urls[1]
    finally:
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _federation(base: Path, node_db: str | None) -> LogFederation:
    return build_log_federation(
        base,
        settings={"timestamping_interval": 1},
        node_config={"messagelog": {"archive_interval": 0, "timestamp_batch_size": 5}},
        db_urls={AIZU: node_db} if node_db else None,
    )


def test_backup_of_a_serving_node_restores_verifies_and_serves(
    tmp_path: Path, backend: tuple[str, str | None, str | None]
) -> None:
    kind, node_db, restore_db = backend
    lf = _federation(tmp_path / "fed", node_db)
    try:
        lf.start_nodes()
        assert all(r.status == 200 for r in lf.calls(6))
        written: list[dict[str, object]] = []

        def archive() -> bool:  # once stamped, the records go into a signed archive
            written.extend(log_cli(lf.aizu, "archive", "--json", check=True).json()["archives"])
            return bool(written)

        wait_until(archive, 20, "an archive of Aizu's stamped records")
        before = [lf.call() for _ in range(3)]  # live records, possibly unstamped
        assert all(r.status == 200 for r in before)

        out = tmp_path / "aizu.backup.tar.gz"
        result = secnode("backup", "--out", out, "--json", "--dir", lf.aizu.dir)
        summary = json.loads(result.stdout)
        assert summary["node"] == lf.aizu.node_id
        assert summary["databases"][0]["kind"] == kind
        assert summary["archives"] == len(written)
        assert lf.call().status == 200  # the node kept serving while it was copied
        lf.fed.stop_node(AIZU)

        restored = tmp_path / "aizu-restored"
        argv: list[str | Path] = ["restore", out, "--dir", restored]
        if kind == "postgresql":
            refused = secnode(*argv, check=False)
            assert refused.returncode == 1
            assert refused.stderr.startswith("error: ") and "--db URL" in refused.stderr
            assert not restored.exists()
            argv += ["--db", str(restore_db)]
        report = secnode(*argv, "--json")
        assert json.loads(report.stdout)["log_verified"] is True
        assert (
            (restored / "keys" / "sign.key")
            .read_bytes()
            .startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        )  # keys stay encrypted
        verify = secnode("log", "verify", "--json", "--dir", restored, check=False)
        verdict = json.loads(verify.stdout)
        assert verify.returncode == 0 and verdict["ok"], verdict
        ids = {r.message_id for r in before}
        found = log_cli(lf.aizu, "search", "--json", check=True).json()
        restored_found = json.loads(secnode("log", "search", "--json", "--dir", restored).stdout)
        assert ids <= {r["message_id"] for r in restored_found}
        assert len(restored_found) <= len(found)  # what came after the backup is not in it

        # the restored node takes the original's place and exchange resumes
        node = lf.aizu
        node.dir = restored
        lf.fed.start_node(AIZU)
        reply = lf.call(b'{"after":"restore"}')
        assert reply.status == 200, reply
        assert b'"after"' in reply.body
        searched = json.loads(
            secnode(
                "log", "search", "--message-id", reply.message_id, "--json", "--dir", restored
            ).stdout
        )
        assert {r["direction"] for r in searched} == {"request_in", "response_out"}
    finally:
        lf.close()


def _downgrade(url: str, target: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, target)
    engine.dispose()


def test_db_upgrade_from_the_previous_revision_then_the_node_serves(
    tmp_path: Path, backend: tuple[str, str | None, str | None]
) -> None:
    kind, node_db, _ = backend
    lf = _federation(tmp_path / "fed", node_db)
    try:
        lf.start_nodes()
        lf.fed.stop_node(AIZU)
        node_url = node_db or f"sqlite:///{lf.aizu.dir / 'secnode.db'}"
        head = db.head_revision()
        # Before any exchange: the newest revision adds the log's witness column, and a
        # downgrade drops it with its values, which no real older database ever held.
        _downgrade(node_url, "-1")
        if kind == "sqlite":
            # a log database made by create_all before it had migrations: no revision row
            log_url = f"sqlite:///{lf.aizu.dir / 'messagelog.db'}"
            engine = create_engine(log_url)
            with engine.begin() as conn:
                conn.execute(text(f"DROP TABLE {LOG_SCHEMA.version_table}"))
            engine.dispose()

        status = json.loads(secnode("db", "status", "--json", "--dir", lf.aizu.dir).stdout)
        assert status[0]["after"] != head and status[0]["current"] is False
        text_status = secnode("db", "status", "--dir", lf.aizu.dir).stdout
        assert "run 'secnode db upgrade'" in text_status

        upgraded = json.loads(secnode("db", "upgrade", "--json", "--dir", lf.aizu.dir).stdout)
        assert upgraded[0]["before"] == status[0]["after"] and upgraded[0]["after"] == head
        if kind == "sqlite":
            assert upgraded[1]["name"] == "message log database"
            assert upgraded[1]["before"] == "0001_mlog"  # stamped, then upgraded to its head
            assert upgraded[1]["after"] == "0003_mlog_body_file"
            engine = create_engine(f"sqlite:///{lf.aizu.dir / 'messagelog.db'}")
            with engine.connect() as conn:
                assert inspect(conn).has_table(LOG_SCHEMA.version_table)
            engine.dispose()
        else:
            assert len(upgraded) == 1  # the log's tables live in the node database
        again = secnode("db", "upgrade", "--dir", lf.aizu.dir).stdout
        assert "(newest)" in again and "upgraded" not in again

        lf.fed.start_node(AIZU)
        assert lf.call().status == 200
        assert secnode("log", "verify", "--dir", lf.aizu.dir, check=False).returncode == 0
    finally:
        lf.close()
