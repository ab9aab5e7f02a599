"""Replay protection in the node database (docs/protocol.md §6.7).

End to end: Aizu's node provides residents/echo; a hand-built peer holding
Takamatsu's real keys sends one signed node-to-node request and then the very
same bytes again (same signature, same staple), as an attacker who captured
them would. The replay must be refused after a real restart of the provider
process, and by a second provider process sharing the node database (one
SQLite file, one PostgreSQL schema). The window's expiry and purge are
checked with a short window. The storage rules (first writer wins, stale rows
taken over, purge in batches, deny when the database is down) are checked on
real SQLite files and PostgreSQL schemas, without a federation.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
import shutil
import sqlite3
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from sqlalchemy import Engine, create_engine, func, select, text

from certs import keys
from certs.ocsp import build_request
from certs.ocsp_server import load_responder
from secnode.core import errors
from secnode.core.errors import XRoadError
from secnode.core.identifiers import ServiceId, SubsystemId
from secnode.core.message import MessageHeaders, request_digest
from secnode.core.msgsig import MessageSigner
from secnode.proxy import wire
from secnode.store import db, replay
from secnode.trust.tls import pinned_client_context
from tests.conftest import PASSPHRASE, free_port
from tests.support.common import http_json, set_toml, wait_until
from tests.support.federation import Federation
from tests.support.logfed import AIZU, LogFederation, build_log_federation
from tests.support.witness import witness_headers

SEEN = replay.SEEN


# ----- a captured signed request, and a peer that sends it ---------------------------------
@dataclass(frozen=True)
class SignedRequest:
    """Everything a node-to-node request carries; resending it is a byte-exact replay."""

    headers: MessageHeaders
    body: bytes
    signature: bytes
    staple: bytes
    witness: dict[str, str]


def staple_for(fed: Federation, cert: x509.Certificate) -> bytes:
    """A fresh OCSP response from the federation CA's own responder."""
    responder = load_responder(fed.ca_dir, PASSPHRASE)
    der, _ = build_request(cert, responder.issuer, nonce=False)
    return responder.respond(der).der


def sign_request(lf: LogFederation, message_id: str | None = None) -> SignedRequest:
    """Takamatsu portal -> Aizu residents/echo, signed now with Takamatsu's sign key."""
    taka = lf.takamatsu
    headers = MessageHeaders(
        protocol="rest",
        client=SubsystemId.parse(f"{taka.member}/portal"),
        service=ServiceId.parse(f"{lf.aizu.member}/residents/echo"),
        message_id=message_id or f"replay-{uuid.uuid4()}",
        rest_method="POST",
        rest_path="",
        content_type="application/json",
    )
    body = b'{"transfer": 100000}'
    cert = x509.load_pem_x509_certificate((taka.dir / "certs" / "sign.pem").read_bytes())
    key = keys.SoftwareSigner.from_file(taka.dir / "keys" / "sign.key", PASSPHRASE)
    signer = MessageSigner(cert, key)
    digest = request_digest(headers, hashlib.sha256(body).digest())
    return SignedRequest(
        headers,
        body,
        signer.sign(digest),
        staple_for(lf.fed, cert),
        witness_headers(signer, digest),
    )


def send(lf: LogFederation, req: SignedRequest, server_port: int | None = None) -> tuple[int, str]:
    """POST ``req`` to Aizu's node-to-node port over Takamatsu's mutual TLS: (status, error)."""
    taka, aizu = lf.takamatsu, lf.aizu
    target = x509.load_pem_x509_certificate((aizu.dir / "certs" / "auth.pem").read_bytes())
    ctx = pinned_client_context(
        taka.dir / "certs" / "auth.pem", taka.dir / "keys" / "auth.key", PASSPHRASE, target
    )
    url = f"https://127.0.0.1:{server_port or aizu.server_port}{wire.EXCHANGE_PATH}"
    wire_headers = {
        wire.H_MESSAGE: wire.encode_headers(req.headers),
        wire.H_SIGNATURE: wire.b64(req.signature),
        wire.H_OCSP: wire.b64(req.staple),
        "Content-Type": "application/json",
        **req.witness,
    }

    async def go() -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=req.body, ssl=ctx, headers=wire_headers) as resp,
        ):
            await resp.read()
            return resp.status, resp.headers.get("X-Road-Error", "")

    return asyncio.run(go())


ACCEPTED = (200, "")
REPLAY = (400, errors.DUPLICATE_MESSAGE_ID)


# ----- building ---------------------------------------------------------------------------
@pytest.fixture
def pg_schema_url(pg_url: str) -> Iterator[str]:
    """A schema of its own in the test database, dropped afterwards."""
    schema = f"replay_{secrets.token_hex(4)}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_url else "?"
    try:
        yield f"{pg_url}{sep}options=" + urllib.parse.quote(f"-csearch_path={schema}")
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def log_fed_factory() -> Iterator[list[LogFederation]]:
    made: list[LogFederation] = []
    yield made
    for lf in made:
        lf.close()


@pytest.fixture(scope="module")
def shared_fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogFederation]:
    """One SQLite federation for the tests that need no settings of their own."""
    made: list[LogFederation] = []
    try:
        yield provider_federation(made, tmp_path_factory.mktemp("replay") / "fed")
    finally:
        for lf in made:
            lf.close()


def provider_federation(made: list[LogFederation], base: Path, **kwargs: object) -> LogFederation:
    """The message-log federation (TSA, Aizu residents/echo for Takamatsu); Aizu serving."""
    lf = build_log_federation(base, **kwargs)  # type: ignore[arg-type]
    made.append(lf)
    lf.fed.start_node(AIZU)
    return lf


def start_second_provider(lf: LogFederation, base: Path, sqlite_shared: bool) -> int:
    """A second ``secnode serve`` of Aizu's node on other ports, on the same node database
    (as behind a load balancer); returns its node-to-node port."""
    first = lf.aizu.dir
    second = shutil.copytree(
        first, base / "aizu-2", ignore=shutil.ignore_patterns("*.db", "*.db-*", "archive")
    )
    if sqlite_shared:  # the copy's own secnode.db would be a second window
        set_toml(second / "secnode.toml", "database", "url", f"sqlite:///{first / 'secnode.db'}")
    ports = {"client": free_port(), "server": free_port(), "admin": free_port()}
    for section, port in ports.items():
        set_toml(second / "secnode.toml", section, "port", port)
    lf.fed.start("node-aizu-2", "secnode", "serve", "--dir", second, port=ports["admin"])
    health = f"http://127.0.0.1:{ports['admin']}/health"
    wait_until(lambda: http_json(health)[0] == 200, 20, "second Aizu process /health ok")
    return ports["server"]


# ----- end to end ---------------------------------------------------------------------------
@pytest.mark.slow
def test_identical_request_refused_after_provider_restart(shared_fed: LogFederation) -> None:
    lf = shared_fed
    captured = sign_request(lf)
    assert send(lf, captured) == ACCEPTED
    assert send(lf, captured) == REPLAY
    lf.fed.stop_node(AIZU)
    lf.fed.start_node(AIZU)
    assert send(lf, captured) == REPLAY  # the window outlives the process
    # a new signature over the same (client, id) is a replay too: ids are the client's
    assert send(lf, sign_request(lf, captured.headers.message_id)) == REPLAY
    assert send(lf, sign_request(lf)) == ACCEPTED
    assert "Client.DuplicateMessageId" in lf.fed.log(f"node-{AIZU}")


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_two_processes_share_one_window(
    backend: str,
    log_fed_factory: list[LogFederation],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    if backend == "postgres":
        db_urls = {AIZU: request.getfixturevalue("pg_schema_url")}
        lf = provider_federation(log_fed_factory, tmp_path / "fed", db_urls=db_urls)
    else:
        lf = request.getfixturevalue("shared_fed")
    other_port = start_second_provider(lf, tmp_path, sqlite_shared=backend == "sqlite")
    try:
        first, second = sign_request(lf), sign_request(lf)
        assert send(lf, first) == ACCEPTED
        assert send(lf, first, other_port) == REPLAY
        assert send(lf, second, other_port) == ACCEPTED
        assert send(lf, second) == REPLAY
        # the same captured request raced at both processes at once: exactly one is answered
        raced = [sign_request(lf) for _ in range(4)]
        with ThreadPoolExecutor(8) as pool:
            futures = [
                pool.submit(send, lf, r, port)
                for r in raced
                for port in (lf.aizu.server_port, other_port)
            ]
            results = [f.result() for f in futures]
        assert sorted(results) == sorted([ACCEPTED, REPLAY] * len(raced)), results
    finally:
        lf.fed.stop("node-aizu-2")


@pytest.mark.slow
def test_window_expiry_allows_reuse_and_purges(
    log_fed_factory: list[LogFederation], tmp_path: Path
) -> None:
    """``replay_window`` 1 s, OCSP freshness 8 s: the window is 8 s (a captured request
    verifies that long), then the id may be used again and the old rows are purged."""
    freshness = 8
    settings = {
        "timestamping_interval": 1,
        "ocsp_fetch_interval": 2,
        "ocsp_freshness_seconds": freshness,
    }
    lf = provider_federation(
        log_fed_factory,
        tmp_path / "fed",
        settings=settings,
        node_config={"server": {"replay_window": 1}},
    )
    started = time.time()
    captured, other = sign_request(lf), sign_request(lf)
    assert send(lf, captured) == ACCEPTED and send(lf, other) == ACCEPTED
    time.sleep(1.5)  # past replay_window, well inside the staple's freshness
    assert send(lf, captured) == REPLAY
    mid = captured.headers.message_id
    # poll: a fresh signature over the same id, until the window has passed
    wait_until(
        lambda: send(lf, sign_request(lf, mid)) == ACCEPTED,
        freshness + 15,
        "the id accepted again after the window",
        interval=0.5,
    )
    assert time.time() - started >= freshness
    assert send(lf, sign_request(lf, mid)) == REPLAY  # its new use opened a new window
    db_path = lf.aizu.dir / "secnode.db"

    def seen(message_id: str) -> int:
        with sqlite3.connect(db_path) as conn:
            rows = conn.execute(
                "SELECT COUNT(*) FROM seen_message_ids WHERE message_id = ?", (message_id,)
            ).fetchone()
        return int(rows[0])

    wait_until(lambda: seen(other.headers.message_id) == 0, 15, "expired row purged")
    assert seen(mid) == 1


# ----- the storage rules on real databases ----------------------------------------------------
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def node_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "postgres":
        url = request.getfixturevalue("pg_schema_url")
    else:
        url = f"sqlite:///{tmp_path / 'secnode.db'}"
    engine = db.make_engine(url)
    db.migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()


T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_first_use_wins_stale_rows_are_taken_over(node_engine: Engine) -> None:
    client = "JP/GOV/372013/portal"
    assert replay.record_first_use(node_engine, client, "m1", 600, at(0))
    assert not replay.record_first_use(node_engine, client, "m1", 600, at(599))
    assert replay.record_first_use(node_engine, "JP/GOV/072028/portal", "m1", 600, at(1))
    # no purge has run: the stale row does not block, its new use is dated anew
    assert replay.record_first_use(node_engine, client, "m1", 600, at(600))
    assert not replay.record_first_use(node_engine, client, "m1", 600, at(1199))
    with node_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(SEEN)).scalar() == 2


def test_purge_removes_only_expired_rows(node_engine: Engine) -> None:
    old = [
        {"client": "c", "message_id": f"old-{n}", "seen_at": at(n % 2)}
        for n in range(replay.PURGE_BATCH + 7)
    ]  # more than one batch
    with node_engine.begin() as conn:
        conn.execute(SEEN.insert(), old)
    replay.record_first_use(node_engine, "c", "recent", 60, at(30))
    assert replay.purge(node_engine, 60, at(61)) == replay.PURGE_BATCH + 7
    with node_engine.connect() as conn:
        assert conn.execute(select(SEEN.c.message_id)).scalars().all() == ["recent"]
    assert not replay.record_first_use(node_engine, "c", "recent", 60, at(61))


def test_racing_writers_exactly_one_wins(node_engine: Engine) -> None:
    """Separate engines (separate connection pools, as separate processes have) racing."""
    engines = [
        db.make_engine(node_engine.url.render_as_string(hide_password=False)) for _ in range(4)
    ]
    try:
        for round_ in range(5):
            mid = f"race-{round_}"
            with ThreadPoolExecutor(8) as pool:
                futures = [
                    pool.submit(replay.record_first_use, e, "c", mid, 600) for e in engines * 2
                ]
                won = [f.result() for f in futures]
            assert won.count(True) == 1, won
    finally:
        for engine in engines:
            engine.dispose()


def test_database_unavailable_refuses_with_a_clear_error() -> None:
    """Deny by default: nothing recorded means we cannot tell a replay, so we refuse."""
    url = f"postgresql+psycopg://secnode@127.0.0.1:{free_port()}/none?connect_timeout=2"
    window = replay.ReplayWindow(db.make_engine(url), 600)
    client = SubsystemId.parse("JP/GOV/372013/portal")
    with pytest.raises(XRoadError, match=r"cannot record the message id") as caught:
        asyncio.run(window.remember(client, "m1", None))
    assert caught.value.code == errors.SERVER_PROXY_INTERNAL_ERROR
    assert "cannot record the message id" in caught.value.message
    window.engine.dispose()


def test_window_is_never_shorter_than_the_staple_freshness() -> None:
    assert replay.effective_window(600, None) == 3600  # the default freshness
    assert replay.effective_window(7200, None) == 7200


def test_sqlite_inline_insert_falls_back_to_the_careful_path(tmp_path: Path) -> None:
    """The event loop's own INSERT (issue 14) records a first use; a duplicate, a stale
    row and a write lock held elsewhere all go to the thread path and decide as before;
    its rows compare with the window's cut-offs (the purge removes them when due)."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'secnode.db'}")
    db.migrate(engine)
    window = replay.ReplayWindow(engine, 600)
    client = SubsystemId.parse("JP/GOV/372013/portal")

    def rows() -> dict[str, dt.datetime]:
        with engine.connect() as conn:
            found = conn.execute(select(replay.SEEN.c.message_id, replay.SEEN.c.seen_at))
            return {mid: seen.replace(tzinfo=dt.UTC) for mid, seen in found}

    async def scenario() -> None:
        await window.remember(client, "m1", None)
        assert window._inline is not None and window._inline.conn is not None
        with pytest.raises(XRoadError, match="already used by"):
            await window.remember(client, "m1", None)
        stale = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        assert replay.record_first_use(engine, str(client), "m-stale", 3600, stale)
        await window.remember(client, "m-stale", None)  # taken over: older than the window
        holder = sqlite3.connect(tmp_path / "secnode.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        task = asyncio.ensure_future(window.remember(client, "m2", None))
        await asyncio.sleep(0.3)
        assert not task.done()  # the thread path waits for the lock; the loop does not
        holder.execute("COMMIT")
        holder.close()
        await asyncio.wait_for(task, 30)
        for n in range(replay.InlineInsert.CHECKPOINT_EVERY + 1):  # one takes the thread
            await window.remember(client, f"bulk-{n}", None)

    try:
        asyncio.run(scenario())
        seen = rows()
        assert set(seen) - {
            f"bulk-{n}" for n in range(replay.InlineInsert.CHECKPOINT_EVERY + 1)
        } == {
            "m1",
            "m-stale",
            "m2",
        }
        assert len(seen) == 3 + replay.InlineInsert.CHECKPOINT_EVERY + 1
        assert seen["m-stale"] > dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=601)
        assert replay.purge(engine, 600, later) == len(seen)
    finally:
        window.close()
        engine.dispose()
