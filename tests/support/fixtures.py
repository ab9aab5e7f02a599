"""The fixtures every test module has (loaded by ``pytest_plugins`` in tests/conftest.py)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from secnode.demo.federation import Federation
from tests.support.common import PASSPHRASE, PG_URL_ENV, cli_env, wait_for_port
from tests.support.federation import build_federation
from tests.support.pki import TestCA, make_ca


@pytest.fixture(autouse=True)
def _passphrase_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECNODE_PASSPHRASE", PASSPHRASE.decode())


@pytest.fixture
def spawn() -> Iterator[object]:
    """Start long-running CLI servers; all are terminated at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(tool: str, *args: str, port: int | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", tool, *args],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        if port is not None:
            wait_for_port(port, proc=proc)
        return proc

    yield start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def test_ca(tmp_path: Path) -> TestCA:
    return make_ca(tmp_path)


@pytest.fixture
def pg_url() -> str:
    url = os.environ.get(PG_URL_ENV)
    if not url:
        pytest.skip(f"{PG_URL_ENV} not set (PostgreSQL tests need a server URL)")
    return url


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped at teardown: the URL selects it (search_path)."""
    schema = f"pol_{secrets.token_hex(4)}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_url else "?"
    yield f"{pg_url}{sep}options=" + urllib.parse.quote(f"-csearch_path={schema}")
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def federation_factory(tmp_path: Path) -> Iterator[Callable[..., Federation]]:
    """``factory(**build_federation kwargs)``; every federation is stopped at teardown."""
    made: list[Federation] = []

    def make(base: Path | None = None, **kwargs: Any) -> Federation:
        fed = build_federation(base or tmp_path / f"fed{len(made)}", **kwargs)
        made.append(fed)
        return fed

    yield make
    for fed in made:
        fed.close()


@pytest.fixture
def federation(federation_factory: Callable[..., Federation]) -> Federation:
    """Two registered, synced nodes (aizu JP/GOV/072028, takamatsu JP/GOV/372013); not serving."""
    return federation_factory()
