"""Console accounts (``secnode admin user add|list|disable|passwd``), argon2 hashes in the
node database, server-side sessions, the login limiter and the append-only audit trail."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from secnode.cli import main as secnode_main
from secnode.console import accounts, audit, sessions
from secnode.console.ratelimit import AttemptLimiter
from secnode.home import NodeHome
from secnode.store import db
from tests.conftest import PASSPHRASE, cli_env, free_port, wait_for_port
from tests.support.cli import invoke
from tests.support.federation import create


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeHome]:
    fed = create(tmp_path / "fed", start_servers=False)
    invoke(
        "secnode",
        "init",
        tmp_path / "node",
        "--member",
        "JP/GOV/072028",
        "--server-code",
        "ss1",
        "--central",
        fed.central_url,
        "--anchor",
        fed.anchor,
    )
    home = NodeHome.open(tmp_path / "node")
    yield home
    home.close()


def secnode(node: NodeHome, *args: str, stdin: str = "") -> tuple[int, str]:
    result = CliRunner().invoke(
        secnode_main,
        [*args, "--dir", str(node.path)],
        input=stdin,
        env={"SECNODE_PASSPHRASE": PASSPHRASE.decode(), "SECNODE_DIR": None},
    )
    return result.exit_code, result.output


def test_user_add_list_disable_passwd_through_the_cli(node: NodeHome) -> None:
    code, out = secnode(
        node,
        "admin",
        "user",
        "add",
        "olivia",
        "--role",
        "operator",
        "--password-stdin",
        stdin="correct horse battery\n",
    )
    assert code == 0, out
    code, out = secnode(
        node,
        "admin",
        "user",
        "add",
        "arthur",
        "--role",
        "auditor",
        "--password-stdin",
        stdin="auditor staple 42\n",
    )
    assert code == 0, out
    code, out = secnode(node, "admin", "user", "list", "--json")
    assert code == 0
    listed = {u["username"]: u for u in json.loads(out)}
    assert {n: u["role"] for n, u in listed.items()} == {"olivia": "operator", "arthur": "auditor"}
    assert "argon2" not in out and "password_hash" not in out  # hashes are never shown
    with node.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT password_hash FROM console_users")).scalars().all()
    assert all(h.startswith("$argon2id$") for h in stored)
    assert all("correct horse" not in h for h in stored)

    assert accounts.authenticate(node.engine, "olivia", "correct horse battery") is not None
    assert accounts.authenticate(node.engine, "olivia", "wrong horse battery") is None
    code, out = secnode(
        node, "admin", "user", "passwd", "olivia", "--password-stdin", stdin="new long secret!\n"
    )
    assert code == 0, out
    assert accounts.authenticate(node.engine, "olivia", "correct horse battery") is None
    assert accounts.authenticate(node.engine, "olivia", "new long secret!") is not None
    code, out = secnode(node, "admin", "user", "disable", "olivia")
    assert code == 0, out
    assert accounts.authenticate(node.engine, "olivia", "new long secret!") is None
    actions = [e["action"] for e in audit.entries(node.engine)]
    assert actions == ["user.disable", "user.passwd", "user.add", "user.add"]


@pytest.mark.parametrize(
    ("args", "stdin", "why"),
    [
        (("add", "olivia", "--role", "operator"), "short\n", "at least 12 characters"),
        (("add", "Bad Name", "--role", "operator"), "long enough password\n", "user name"),
        (("disable", "nobody"), "", "unknown user nobody"),
        (("passwd", "nobody"), "long enough password\n", "unknown user nobody"),
    ],
)
def test_bad_account_requests_are_one_line_refusals(
    node: NodeHome, args: tuple[str, ...], stdin: str, why: str
) -> None:
    extra = ("--password-stdin",) if stdin else ()
    code, out = secnode(node, "admin", "user", *args, *extra, stdin=stdin)
    assert code != 0
    assert why in out and "Traceback" not in out


def test_a_user_name_is_added_once(node: NodeHome) -> None:
    accounts.add_user(node.engine, "olivia", "operator", "long enough password")
    with pytest.raises(accounts.AccountError, match="exists"):
        accounts.add_user(node.engine, "olivia", "auditor", "another long password")


def test_there_is_no_default_account(node: NodeHome) -> None:
    assert accounts.list_users(node.engine) == []
    assert accounts.authenticate(node.engine, "admin", "admin") is None


def test_sessions_store_only_a_digest_and_end(node: NodeHome) -> None:
    import datetime as dt

    token, csrf = sessions.create(node.engine, "console", "olivia", dt.timedelta(hours=1))
    with node.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT token_sha256, csrf FROM console_sessions")).one()
    assert row.token_sha256 != token and token not in row.token_sha256
    found = sessions.lookup(node.engine, "console", token)
    assert found is not None and found.principal == "olivia" and found.csrf == csrf
    assert sessions.lookup(node.engine, "resident", token) is None  # kinds do not mix
    sessions.end(node.engine, token)
    assert sessions.lookup(node.engine, "console", token) is None
    expired, _ = sessions.create(node.engine, "console", "olivia", dt.timedelta(seconds=-1))
    assert sessions.lookup(node.engine, "console", expired) is None


def test_csrf_comparison_refuses_missing_and_wrong_tokens() -> None:
    assert sessions.csrf_ok("abc", "abc")
    assert not sessions.csrf_ok("abc", "abd")
    assert not sessions.csrf_ok("abc", None)
    assert not sessions.csrf_ok("abc", "")
    assert not sessions.csrf_ok(None, "abc")
    assert not sessions.csrf_ok("", "")


def test_the_limiter_blocks_after_the_limit_within_the_window() -> None:
    now = [0.0]
    limiter = AttemptLimiter(3, 60, clock=lambda: now[0])
    for _ in range(3):
        assert not limiter.blocked("user:olivia")
        limiter.failed("user:olivia", "addr:1")
    assert limiter.blocked("user:olivia") and limiter.blocked("addr:1")
    assert not limiter.blocked("user:arthur")
    now[0] = 61.0
    assert not limiter.blocked("user:olivia")


def test_the_audit_trail_is_append_only(node: NodeHome) -> None:
    audit.record(node.engine, "olivia", "operator", "acl.grant", "residents/x")
    for statement in ("UPDATE admin_audit SET actor = 'mallory'", "DELETE FROM admin_audit"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), node.engine.begin() as c:
            c.execute(sa.text(statement))
    assert [e["actor"] for e in audit.entries(node.engine)] == ["olivia"]


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[sa.Engine]:
    schema = f"console_{secrets.token_hex(4)}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_url else "?"
    url = f"{pg_url}{sep}options=" + urllib.parse.quote(f"-csearch_path={schema}")
    engine = db.make_engine(url)
    try:
        db.migrate(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.mark.postgres
def test_accounts_codes_and_the_append_only_trail_on_postgresql(pg_engine: sa.Engine) -> None:
    from secnode.console import disclosure

    accounts.add_user(pg_engine, "olivia", "operator", "long enough password")
    assert accounts.authenticate(pg_engine, "olivia", "long enough password") is not None
    code, _ = disclosure.issue_code(pg_engine, "S-1", "test")
    assert not disclosure.redeem(pg_engine, "S-1", "AAAA-BBBB-CCCC")
    assert disclosure.redeem(pg_engine, "S-1", code)
    assert not disclosure.redeem(pg_engine, "S-1", code)
    audit.record(pg_engine, "olivia", "operator", "acl.grant", "residents/x")
    for statement in ("UPDATE admin_audit SET actor = 'mallory'", "DELETE FROM admin_audit"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), pg_engine.begin() as c:
            c.execute(sa.text(statement))
    assert [e["actor"] for e in audit.entries(pg_engine)] == ["olivia"]


def test_without_tls_there_is_no_console_and_no_disclosure_page(node: NodeHome) -> None:
    """Deny by default: plain HTTP serves /health but no console; a disclosure port without
    TLS stops the node with a one-line reason."""
    from tests.support.common import set_toml

    admin_port = free_port()
    config = node.path / "secnode.toml"
    for section in ("client", "server"):
        set_toml(config, section, "port", free_port())
    set_toml(config, "admin", "port", admin_port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "secnode", "serve", "--dir", str(node.path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=cli_env(),
    )
    try:
        wait_for_port(admin_port, proc=proc)
        with pytest.raises(urllib.error.HTTPError, match=r"^HTTP Error 404: ") as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/console/login", timeout=10)
        assert refused.value.code == 404
        refused.value.close()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/health", timeout=10)
        except urllib.error.HTTPError as exc:  # unhealthy (no certificates yet), but served
            assert exc.code == 503
            exc.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        assert proc.stdout is not None
        proc.stdout.close()
    set_toml(config, "disclosure", "port", free_port())
    out = subprocess.run(
        [sys.executable, "-m", "secnode", "serve", "--dir", str(node.path)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert out.returncode != 0
    assert "[disclosure] port is set: tls_cert and tls_key are required" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr + out.stdout
