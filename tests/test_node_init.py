"""``secnode init`` from install to a node directory, and ``central db upgrade``.

Init is all or nothing (a failure leaves no directory and no staging leftovers), the
configuration is valid TOML whatever the values hold, the listening address is an
option, and PostgreSQL problems are one line: a missing driver, an unreachable server,
a database that does not exist (created when the role may, else the exact ``createdb``).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, make_url, text

from central import store as central_store
from certs.ca import CertificateAuthority
from tests.conftest import PG_URL_ENV, run_cli


@pytest.fixture
def anchor(tmp_path: Path) -> Path:
    """A certificate to hand over as the configuration anchor (init only checks it parses)."""
    CertificateAuthority.init(tmp_path / "anchor-ca", "Anchor CA", passphrase=b"pw")
    return tmp_path / "anchor-ca" / "ca.pem"


def init(
    target: Path, anchor: Path, *extra: str, check: bool = False
) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "secnode",
        "init",
        str(target),
        "--member",
        "JP/GOV/072028",
        "--server-code",
        "ss1",
        "--central",
        "http://127.0.0.1:9",
        "--anchor",
        str(anchor),
        *extra,
        check=check,
    )


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".init-" in p.name)


def test_config_is_valid_toml_whatever_the_values_hold(tmp_path: Path, anchor: Path) -> None:
    odd = tmp_path / 'odd "quoted" \\ dir'
    odd.mkdir()
    url = f"sqlite:///{odd / 'node.db'}"
    result = init(tmp_path / "node", anchor, "--db", url, "--host", "127.0.0.1", "--port", "5599")
    assert result.returncode == 0, result.stderr
    config = tomllib.loads((tmp_path / "node" / "secnode.toml").read_text())
    assert config["database"]["url"] == url
    assert config["server"] == {
        "host": "127.0.0.1",
        "port": 5599,
        "address": "127.0.0.1:5599",
        "replay_window": 600,
    }
    assert (odd / "node.db").exists()  # the database it names was created and migrated
    status = run_cli("secnode", "db", "status", "--dir", str(tmp_path / "node"))
    assert "(newest)" in status.stdout


def test_an_unreachable_database_leaves_no_node_directory(tmp_path: Path, anchor: Path) -> None:
    target = tmp_path / "node"
    result = init(target, anchor, "--db", "postgresql+psycopg://secnode@127.0.0.1:1/secnode")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot connect to"), result.stderr
    assert not target.exists() and leftovers(tmp_path) == []


def test_a_failure_after_staging_leaves_nothing(tmp_path: Path, anchor: Path) -> None:
    """The database is migrated inside the staging directory: a SQLite URL in a directory
    that cannot hold it fails there, and the half-made staging directory goes with it."""
    target = tmp_path / "node"
    result = init(target, anchor, "--db", f"sqlite:///{tmp_path / 'missing-dir' / 'n.db'}")
    assert result.returncode == 1 and result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert not target.exists() and leftovers(tmp_path) == []


def test_a_url_that_is_not_one_is_refused_in_one_line(tmp_path: Path, anchor: Path) -> None:
    result = init(tmp_path / "node", anchor, "--db", "not a url")
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: cannot use database URL")
    assert not (tmp_path / "node").exists()


def test_a_missing_driver_is_one_line_naming_the_extra(tmp_path: Path, anchor: Path) -> None:
    if importlib.util.find_spec("pg8000") is not None:
        pytest.skip("pg8000 is installed here: no missing driver to show")
    result = init(tmp_path / "node", anchor, "--db", "postgresql+pg8000://u@127.0.0.1/x")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "pip install 'secnode[postgres]'" in result.stderr
    assert not (tmp_path / "node").exists()


def test_a_non_empty_directory_is_refused(tmp_path: Path, anchor: Path) -> None:
    target = tmp_path / "node"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    result = init(target, anchor)
    assert result.returncode == 1 and "is not an empty directory" in result.stderr
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]


def test_an_empty_directory_becomes_the_node(tmp_path: Path, anchor: Path) -> None:
    target = tmp_path / "node"
    target.mkdir()
    assert init(target, anchor).returncode == 0
    assert (target / "secnode.toml").exists() and (target / "secnode.db").exists()


@pytest.fixture
def pg_base() -> str:
    url = os.environ.get(PG_URL_ENV)
    if not url:
        pytest.skip(f"{PG_URL_ENV} not set (PostgreSQL tests need a server URL)")
    return url


@pytest.fixture
def pg_admin(pg_base: str) -> Iterator[list[str]]:
    """Databases and roles to drop at the end (names appended by the test)."""
    drop: list[str] = []
    yield drop
    engine = create_engine(pg_base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for item in drop:
            kind, name = item.split(":", 1)
            if kind == "db":
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            else:
                conn.execute(text(f'DROP ROLE IF EXISTS "{name}"'))
    engine.dispose()


@pytest.mark.postgres
def test_init_creates_the_postgresql_database(
    tmp_path: Path, anchor: Path, pg_base: str, pg_admin: list[str]
) -> None:
    name = f"i15_init_{secrets.token_hex(4)}"
    pg_admin.append(f"db:{name}")
    url = make_url(pg_base).set(database=name).render_as_string(hide_password=False)
    result = init(tmp_path / "node", anchor, "--db", url, check=True)
    assert f"created database {make_url(url).render_as_string()}" in result.stdout
    status = run_cli("secnode", "db", "status", "--json", "--dir", str(tmp_path / "node"))
    assert '"current": true' in status.stdout


@pytest.mark.postgres
def test_a_role_that_cannot_create_gets_the_createdb_command(
    tmp_path: Path, anchor: Path, pg_base: str, pg_admin: list[str]
) -> None:
    role, name = f"i15_role_{secrets.token_hex(4)}", f"i15_nodb_{secrets.token_hex(4)}"
    engine = create_engine(pg_base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN NOCREATEDB'))
    engine.dispose()
    pg_admin.append(f"role:{role}")
    base = make_url(pg_base)
    url = base.set(username=role, password=None, database=name)
    result = init(tmp_path / "node", anchor, "--db", url.render_as_string(hide_password=False))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    host, port = base.host or "localhost", base.port or 5432
    assert f"createdb -h {host} -p {port} -U {role} {name}" in result.stderr
    assert not (tmp_path / "node").exists() and leftovers(tmp_path) == []


def _central_at_previous_revision(tmp_path: Path, db_url: str | None) -> Path:
    directory = tmp_path / "central"
    run_cli(
        "central", "init", str(directory), "--instance", "JP", *(["--db", db_url] if db_url else [])
    )
    url = db_url or f"sqlite:///{directory / 'central.db'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(central_store.MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "-1")
    engine.dispose()
    return directory


@pytest.fixture(params=["sqlite", "postgresql"])
def central_db(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    base = os.environ.get(PG_URL_ENV)
    if not base:
        pytest.skip(f"{PG_URL_ENV} not set (PostgreSQL tests need a server URL)")
    name = f"i15_central_{secrets.token_hex(4)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_central_db_upgrade_from_the_previous_revision(
    tmp_path: Path, central_db: str | None
) -> None:
    directory = _central_at_previous_revision(tmp_path, central_db)
    status = run_cli("central", "db", "status", "--dir", str(directory)).stdout
    assert "run 'central db upgrade'" in status
    upgraded = run_cli("central", "db", "upgrade", "--dir", str(directory)).stdout
    assert f"-> {central_store.SCHEMA_HEAD}" in upgraded
    # the registry works on the upgraded database
    assert run_cli("central", "member", "list", "--json", "--dir", str(directory)).stdout
    assert "(newest)" in run_cli("central", "db", "upgrade", "--dir", str(directory)).stdout
