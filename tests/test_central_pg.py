"""The central registry's acceptance scenario on PostgreSQL (CI sets SECNODE_TEST_PG_URL).

Each test gets a schema of its own (via libpq's ``options=-csearch_path``), dropped
afterwards, so reruns and other suites sharing the database never collide.
"""

from __future__ import annotations

import datetime as dt
import secrets
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from central import config as config_mod
from central.models import Member
from central.store import Store
from tests.support.registry import (
    AIZU,
    central,
    counts,
    in_process,
    publish_concurrently,
    published_versions,
    refused,
    run_end_to_end,
    subprocess_cli,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_schema_url(pg_url: str) -> Iterator[str]:
    schema = f"central_test_{secrets.token_hex(4)}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_url else "?"
    options = urllib.parse.quote(f"-csearch_path={schema}")
    try:
        yield f"{pg_url}{sep}options={options}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_end_to_end_postgresql(
    tmp_path: Path, spawn: Callable[..., Any], pg_schema_url: str
) -> None:
    # Administrative steps run the click commands in-process (the SQLite variant runs them
    # as subprocesses); the server is a real subprocess on PostgreSQL either way.
    fed = run_end_to_end(tmp_path, spawn, pg_schema_url, cli=in_process)
    assert config_mod.load(fed.dir).database_url == pg_schema_url
    assert not (fed.dir / "central.db").exists()  # everything went to PostgreSQL
    # refusals are atomic on PostgreSQL too
    before = counts(fed.dir)
    assert refused(fed.dir, "member", "add", AIZU, "--name", "x", cli=subprocess_cli) == (
        f"error: member {AIZU} already exists"
    )
    assert "still owns node(s)" in refused(fed.dir, "member", "remove", AIZU)
    assert counts(fed.dir) == before


def test_unique_identifiers_are_enforced_by_postgresql(pg_schema_url: str, tmp_path: Path) -> None:
    """Two writers racing past the application check still cannot both insert."""
    in_process("init", str(tmp_path / "r"), "--instance", "JP", "--db", pg_schema_url)
    store = Store(pg_schema_url)
    try:
        with (
            pytest.raises(IntegrityError, match="members_identifier"),
            store.engine.begin() as conn,
        ):
            for _ in range(2):
                conn.execute(
                    Member.__table__.insert().values(
                        identifier=AIZU,
                        member_class="GOV",
                        code="072028",
                        name="x",
                        created_at=dt.datetime.now(dt.UTC),
                    )
                )
        assert counts(tmp_path / "r")["members"] == 0
    finally:
        store.close()


def test_concurrent_publishers_each_get_a_version_postgresql(
    pg_schema_url: str, tmp_path: Path
) -> None:
    """READ COMMITTED lets two publishers read the same newest version: one retries."""
    directory = tmp_path / "r"
    in_process("init", str(directory), "--instance", "JP", "--db", pg_schema_url)
    central(directory, "conf", "publish")
    assert publish_concurrently(directory) == []
    assert published_versions(directory) == list(range(1, 14))
