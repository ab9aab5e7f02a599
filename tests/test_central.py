"""Central registry end to end: the real CLI, a real server on 127.0.0.1, openssl as judge.

The registry is driven only through ``python -m central`` subprocesses and HTTP;
the node side is the real :mod:`secnode.globalconf` client. Database counts are
read back through the same store code the CLI uses, to prove refusals leave
nothing half-written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes, serialization

from central.signing import build_anchor_cert
from certs import keys, ocsp
from certs.cms import sign_detached
from certs.ocsp_server import load_responder
from secnode import globalconf as gc_io
from secnode.core import globalconf as gc
from secnode.core import registration as rc
from secnode.core.identifiers import NodeId
from secnode.core.jsonfmt import canonical_json, cert_sha256_hex
from secnode.registration_client import submit
from tests.support.common import (
    PASSPHRASE,
    http_get,
    run_cli,
)
from tests.support.pki import TestCA, make_ca
from tests.support.registry import (
    AIZU,
    KAKO,
    build_registry,
    central,
    central_json,
    counts,
    in_process,
    node_certs,
    post,
    publish_concurrently,
    published_versions,
    refused,
    registration,
    run_end_to_end,
    signer,
    subprocess_cli,
)


# ----- acceptance: end to end -------------------------------------------------------------
def test_end_to_end_sqlite(tmp_path: Path, spawn: Callable[..., Any]) -> None:
    fed = run_end_to_end(tmp_path, spawn, None)
    config_text = (fed.dir / "central.toml").read_text()
    assert 'instance = "JP"' in config_text
    assert b"ENCRYPTED PRIVATE KEY" in (fed.dir / "conf-signing.key").read_bytes()
    with sqlite3.connect(fed.dir / "central.db") as db:  # WAL is a property of the file
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    audit = central_json(fed.dir, "audit")
    actions = [a["action"] for a in audit]
    assert actions[0] == "instance.init"
    assert {"member.add", "registration.receive", "request.approve", "conf.publish"} <= set(actions)
    approve = next(a for a in audit if a["action"] == "request.approve")
    assert approve["operator"] and approve["details"]["subsystems_added"] == [f"{AIZU}/records"]


# ----- the global configuration refused ---------------------------------------------------
@pytest.fixture
def published(tmp_path: Path) -> Iterator[tuple[Path, gc.GlobalConf]]:
    """A registry with one published version, read back without a server."""
    directory = tmp_path / "reg"
    in_process("init", str(directory), "--instance", "JP")
    central(directory, "member", "add", AIZU, "--name", "Aizu")
    central(directory, "conf", "publish")
    central(directory, "conf", "export", "--out-dir", str(tmp_path / "v1"))
    anchors = gc.load_pem_certs((directory / "anchor.pem").read_bytes())
    conf = gc.verify(
        (tmp_path / "v1/conf.json").read_bytes(), (tmp_path / "v1/conf.sig").read_bytes(), anchors
    )
    yield directory, conf


def _anchors(directory: Path) -> list[Any]:
    return gc.load_pem_certs((directory / "anchor.pem").read_bytes())


def test_changed_byte_is_refused(published: tuple[Path, gc.GlobalConf]) -> None:
    directory, conf = published
    tampered = conf.document.replace(b"Aizu", b"Aizv")
    assert tampered != conf.document
    with pytest.raises(gc.GlobalConfError, match="message digest differs") as err:
        gc.verify(tampered, conf.signature, _anchors(directory))
    assert err.value.reason == "signature"
    flipped = bytearray(conf.signature)
    flipped[-5] ^= 0x01  # inside the signature value
    with pytest.raises(gc.GlobalConfError, match="does not verify"):
        gc.verify(conf.document, bytes(flipped), _anchors(directory))


def test_signature_by_another_key_is_refused(published: tuple[Path, gc.GlobalConf]) -> None:
    directory, conf = published
    other = keys.generate_key()
    other_cert = build_anchor_cert(other, "JP", 1)
    forged = sign_detached(conf.document, other_cert, keys.SoftwareSigner(other))
    with pytest.raises(gc.GlobalConfError, match="not the configuration anchor") as err:
        gc.verify(conf.document, forged, _anchors(directory))
    assert err.value.reason == "untrusted_signer"
    # claiming the real anchor certificate but signing with another key
    anchor = _anchors(directory)[0]
    claimed = sign_detached(conf.document, anchor, keys.SoftwareSigner(other))
    with pytest.raises(gc.GlobalConfError, match="does not verify with the signer"):
        gc.verify(conf.document, claimed, _anchors(directory))


def test_expired_document_is_refused(published: tuple[Path, gc.GlobalConf]) -> None:
    directory, conf = published
    later = conf.expires_at + dt.timedelta(seconds=1)
    with pytest.raises(gc.GlobalConfError, match="expired at") as err:
        gc.verify(conf.document, conf.signature, _anchors(directory), at=later)
    assert err.value.code == "OutdatedGlobalConf"
    again = gc.verify(
        conf.document, conf.signature, _anchors(directory), at=later, allow_expired=True
    )
    assert again.is_expired(later) and not again.is_expired(conf.expires_at)


def test_rollback_is_refused(tmp_path: Path, published: tuple[Path, gc.GlobalConf]) -> None:
    directory, v1 = published
    central(directory, "conf", "publish")
    central(directory, "conf", "export", "--out-dir", str(tmp_path / "v2"))
    node = gc_io.ConfStore(tmp_path / "node")
    node.install_anchor((directory / "anchor.pem").read_bytes())
    v2 = node.accept(
        gc_io.Fetched(
            (tmp_path / "v2/conf.json").read_bytes(), (tmp_path / "v2/conf.sig").read_bytes(), 2
        )
    )
    assert v2.version == v1.version + 1
    with pytest.raises(gc.GlobalConfError, match="rollback refused: version 1 is older") as err:
        node.accept(gc_io.Fetched(v1.document, v1.signature, 1))
    assert err.value.reason == "rollback"
    assert node.load_last_good().version == v2.version  # the held copy is untouched


def test_damaged_copy_on_disk_is_replaced(
    tmp_path: Path, published: tuple[Path, gc.GlobalConf]
) -> None:
    directory, conf = published
    node = gc_io.ConfStore(tmp_path / "node")
    with pytest.raises(gc.GlobalConfError, match="no configuration anchor"):
        node.accept(gc_io.Fetched(conf.document, conf.signature, conf.version))
    node.install_anchor((directory / "anchor.pem").read_bytes())
    node.accept(gc_io.Fetched(conf.document, conf.signature, conf.version))
    held = tmp_path / "node" / "current" / "conf.json"
    held.write_bytes(held.read_bytes().replace(b"Aizu", b"Aizv"))
    with pytest.raises(gc.GlobalConfError, match="does not verify"):
        node.load_last_good()
    assert node.accept(gc_io.Fetched(conf.document, conf.signature, conf.version)) == conf
    assert node.load_last_good() == conf


def test_unknown_anchor_is_refused(
    tmp_path: Path, test_ca: TestCA, published: tuple[Path, gc.GlobalConf]
) -> None:
    _, conf = published
    in_process("init", str(tmp_path / "other"), "--instance", "JP")
    for anchors in (_anchors(tmp_path / "other"), [test_ca.ca.cert]):
        with pytest.raises(gc.GlobalConfError, match="not the configuration anchor"):
            gc.verify(conf.document, conf.signature, anchors)
    proc = run_cli(
        "central",
        "conf",
        "verify",
        str(tmp_path / "v1/conf.json"),
        str(tmp_path / "v1/conf.sig"),
        "--anchor",
        str(tmp_path / "other/anchor.pem"),
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: global configuration is signed by O=JP central")
    openssl = subprocess.run(
        [
            "openssl",
            "cms",
            "-verify",
            "-binary",
            "-content",
            str(tmp_path / "v1/conf.json"),
            "-in",
            str(tmp_path / "v1/conf.sig"),
            "-inform",
            "DER",
            "-CAfile",
            str(tmp_path / "other/anchor.pem"),
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ],
        capture_output=True,
    )
    assert openssl.returncode != 0


def test_non_canonical_document_is_refused(published: tuple[Path, gc.GlobalConf]) -> None:
    _, conf = published
    spaced = json.dumps(json.loads(conf.document), indent=1).encode()
    key = keys.generate_key()
    cert = build_anchor_cert(key, "JP", 9)
    sig = sign_detached(spaced, cert, keys.SoftwareSigner(key))
    with pytest.raises(gc.GlobalConfError, match="canonical"):
        gc.verify(spaced, sig, [cert])


# ----- registration refused ---------------------------------------------------------------
def test_registration_refusals(tmp_path: Path, spawn: Callable[..., Any]) -> None:
    fed = build_registry(tmp_path, spawn)
    url = f"{fed.url}/register"
    start = counts(fed.dir)
    with pytest.raises(urllib.error.HTTPError, match=r"^HTTP Error 404: ") as unpublished:
        http_get(f"{fed.url}/globalconf")
    assert unpublished.value.code == 404
    unpublished.value.close()
    with pytest.raises(urllib.error.HTTPError, match=r"^HTTP Error 503: ") as health:
        http_get(f"{fed.url}/health")
    assert health.value.code == 503
    health.value.close()

    def refused_post(data: bytes, status: int, code: str, match: str) -> None:
        got, problem = post(url, data)
        assert (got, problem["code"]) == (status, code), problem
        assert match in problem["detail"], problem["detail"]
        assert counts(fed.dir) == start  # nothing half-written, not even an audit row

    refused_post(b"{not json", 400, "InvalidRequest", "not valid JSON")
    refused_post(b"[]", 400, "InvalidRequest", "not a JSON object")
    refused_post(b'{"request": "AAAA"}', 400, "InvalidRequest", "lacks auth_signature")
    refused_post(b"x" * (rc.MAX_REQUEST_BYTES + 10), 413, "RequestTooLarge", "exceeds")
    # a bad identifier, correctly signed
    body = json.loads(
        rc.build_body(
            NodeId.parse(f"{AIZU}/ss1"), "ss1.aizu.example", fed.node.auth.cert, fed.node.sign.cert
        )
    )
    body["node"] = f"{AIZU}/ss:1"
    raw = canonical_json(body)
    envelope = rc.build_envelope(
        raw, fed.node.auth.cert, signer(fed.node.auth), fed.node.sign.cert, signer(fed.node.sign)
    )
    refused_post(envelope, 400, "InvalidIdentifier", "forbidden character")
    # certificates from a CA the registry never approved
    rogue = node_certs(make_ca(tmp_path, "Rogue CA"), AIZU, "ss1.aizu.example")
    refused_post(
        registration(rogue, f"{AIZU}/ss1", "ss1.aizu.example", []),
        400,
        "UntrustedCertificate",
        "does not chain to an approved CA",
    )
    # a sign certificate of another member
    kako = node_certs(fed.ca, KAKO, "ss1.kako.example")
    mixed = rc.build_request(
        NodeId.parse(f"{AIZU}/ss1"),
        "ss1.aizu.example",
        fed.node.auth.cert,
        signer(fed.node.auth),
        kako.sign.cert,
        signer(kako.sign),
    )
    refused_post(mixed, 400, "MemberMismatch", f"names member {KAKO}")
    # the auth signature made with another key than the certificate's
    body_bytes = rc.build_body(
        NodeId.parse(f"{AIZU}/ss1"), "ss1.aizu.example", fed.node.auth.cert, fed.node.sign.cert
    )
    forged = rc.build_envelope(
        body_bytes,
        fed.node.auth.cert,
        signer(fed.node.sign),
        fed.node.sign.cert,
        signer(fed.node.sign),
    )
    refused_post(forged, 400, "InvalidSignature", "auth_signature")
    # a member the registry does not know
    stranger = node_certs(fed.ca, "JP/GOV/999999", "ss.x.example")
    refused_post(
        registration(stranger, "JP/GOV/999999/ss", "ss.x.example", []),
        404,
        "UnknownMember",
        "does not exist",
    )
    # a stale request (replay of an old one)
    an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    old = rc.build_request(
        NodeId.parse(f"{AIZU}/ss1"),
        "ss1.aizu.example",
        fed.node.auth.cert,
        signer(fed.node.auth),
        fed.node.sign.cert,
        signer(fed.node.sign),
        at=an_hour_ago,
    )
    refused_post(old, 400, "StaleRequest", "build a fresh one")
    # the submit() helper reports the registry's refusal
    with pytest.raises(rc.RegistrationError, match="does not chain") as err:
        submit(url, registration(rogue, f"{AIZU}/ss1", "ss1.aizu.example", []))
    assert err.value.code == "UntrustedCertificate"
    # ... and a good one is accepted once, then its replay is refused
    good = registration(fed.node, f"{AIZU}/ss1", "ss1.aizu.example:5500", [])
    assert submit(url, good)["state"] == "pending"
    status, problem = post(url, good)
    assert (status, problem["code"]) == (409, "DuplicateRequest")
    requests = central_json(fed.dir, "request", "list")
    assert len(requests) == 1
    central(fed.dir, "request", "reject", str(requests[0]["id"]), "--reason", "test")
    assert "already rejected" in refused(fed.dir, "request", "approve", str(requests[0]["id"]))
    assert counts(fed.dir)["nodes"] == 0


def test_registration_with_stapled_ocsp(tmp_path: Path, spawn: Callable[..., Any]) -> None:
    """X-Road sends the sign certificate's OCSP response along; a revoked one is refused."""
    fed = build_registry(tmp_path, spawn)
    responder = load_responder(fed.ca.dir, PASSPHRASE)

    def ocsp_for(cert: Any) -> bytes:
        request, _ = ocsp.build_request(cert, fed.ca.ca.cert, nonce=False)
        return responder.respond(request).der

    revoked = node_certs(fed.ca, AIZU, "ss2.aizu.example")
    fed.ca.ca.revoke(revoked.sign.cert.serial_number, "keyCompromise")
    before = counts(fed.dir)
    status, problem = post(
        f"{fed.url}/register",
        rc.build_request(
            NodeId.parse(f"{AIZU}/ss2"),
            "ss2.aizu.example",
            revoked.auth.cert,
            signer(revoked.auth),
            revoked.sign.cert,
            signer(revoked.sign),
            sign_ocsp=ocsp_for(revoked.sign.cert),
        ),
    )
    assert (status, problem["code"]) == (400, "CertificateRevoked"), problem
    assert counts(fed.dir) == before
    status, problem = post(
        f"{fed.url}/register",
        rc.build_request(
            NodeId.parse(f"{AIZU}/ss1"),
            "ss1.aizu.example",
            fed.node.auth.cert,
            signer(fed.node.auth),
            fed.node.sign.cert,
            signer(fed.node.sign),
            sign_ocsp=ocsp_for(fed.node.auth.cert),
        ),
    )  # a response about another certificate
    assert (status, problem["code"]) == (400, "InvalidOcspResponse"), problem
    status, answer = post(
        f"{fed.url}/register",
        rc.build_request(
            NodeId.parse(f"{AIZU}/ss1"),
            "ss1.aizu.example",
            fed.node.auth.cert,
            signer(fed.node.auth),
            fed.node.sign.cert,
            signer(fed.node.sign),
            sign_ocsp=ocsp_for(fed.node.sign.cert),
        ),
    )
    assert status == 202, answer
    shown = central_json(fed.dir, "request", "show", str(answer["id"]))
    assert shown["sign_ocsp"] == "included and good at receipt"


# ----- registry operations refused --------------------------------------------------------
def test_operator_refusals_leave_nothing_written(tmp_path: Path, test_ca: TestCA) -> None:
    directory = tmp_path / "reg"
    in_process("init", str(directory), "--instance", "JP")
    central(directory, "ca", "add", str(test_ca.cert_path))
    central(directory, "member", "add", AIZU, "--name", "Aizu")
    central(directory, "subsystem", "add", f"{AIZU}/residents")
    auth = test_ca.issue("auth", "CN=ss1.aizu.example")
    central(
        directory,
        "node",
        "add",
        f"{AIZU}/ss1",
        "--address",
        "ss1.aizu.example:5500",
        "--auth-cert",
        str(auth.cert_path),
    )
    start = counts(directory)
    assert start["members"] == 1 and start["nodes"] == 1

    assert refused(directory, "member", "add", AIZU, "--name", "Again", cli=subprocess_cli) == (
        f"error: member {AIZU} already exists"
    )
    assert "forbidden" in refused(directory, "member", "add", "JP/GOV/07:2028", "--name", "x")
    assert "not this registry's JP" in refused(
        directory, "member", "add", "EE/GOV/1", "--name", "x"
    )
    message = refused(directory, "member", "remove", AIZU)
    assert message == (
        f"error: member {AIZU} still owns node(s) {AIZU}/ss1 and subsystem(s) "
        f"{AIZU}/residents; remove them first or use --cascade"
    )
    assert "already registered for node" in refused(
        directory,
        "node",
        "add",
        f"{AIZU}/ss2",
        "--address",
        "ss2.example",
        "--auth-cert",
        str(auth.cert_path),
    )
    sign = test_ca.issue("sign", f"serialNumber={AIZU}")
    assert "has profile sign, not auth" in refused(
        directory,
        "node",
        "add",
        f"{AIZU}/ss2",
        "--address",
        "ss2.example",
        "--auth-cert",
        str(sign.cert_path),
    )
    assert "not host or host:port" in refused(
        directory,
        "node",
        "add",
        f"{AIZU}/ss3",
        "--address",
        "http://x/",
        "--auth-cert",
        str(test_ca.issue("auth", "CN=ss3").cert_path),
    )
    assert "issued the auth certificates" in refused(directory, "ca", "remove", "1")
    assert "shorter than conf_validity_seconds" in refused(
        directory, "settings", "set", "conf_refresh_interval", "600"
    )
    assert "unknown setting" in refused(directory, "settings", "set", "nope", "1")
    assert "not a CA certificate" in refused(directory, "ca", "add", str(auth.cert_path))
    assert "not a time-stamping certificate" in refused(
        directory, "tsa", "add", "t", "--url", "http://t/", "--cert", str(auth.cert_path)
    )
    assert counts(directory) == start  # not one row, audit included

    central(directory, "member", "remove", AIZU, "--cascade")
    after = counts(directory)
    assert (after["members"], after["nodes"], after["subsystems"]) == (0, 0, 0)
    assert after["audit"] == start["audit"] + 1
    assert "is not a central registry directory" in refused(tmp_path, "member", "list")


def test_init_refuses_an_initialised_directory(tmp_path: Path) -> None:
    in_process("init", str(tmp_path / "r"), "--instance", "JP")
    proc = run_cli("central", "init", str(tmp_path / "r"), "--instance", "JP", check=False)
    assert proc.returncode == 1 and "already holds a registry" in proc.stderr
    proc = in_process("init", str(tmp_path / "bad"), "--instance", "J/P", check=False)
    assert proc.returncode == 1 and "forbidden" in proc.stderr
    assert not (tmp_path / "bad").exists()


# ----- re-signing and key rotation --------------------------------------------------------
def test_server_resigns_before_expiry(tmp_path: Path, spawn: Callable[..., Any]) -> None:
    fed = build_registry(
        tmp_path, spawn, settings={"conf_refresh_interval": 1, "conf_validity_seconds": 3}
    )
    central(fed.dir, "conf", "publish")
    store = gc_io.ConfStore(tmp_path / "node")
    store.install_anchor(fed.anchor.read_bytes())
    first = store.refresh(f"{fed.url}/globalconf")
    deadline = time.monotonic() + 10
    latest = first
    while latest.version == first.version and time.monotonic() < deadline:
        time.sleep(0.3)
        latest = store.refresh(f"{fed.url}/globalconf")
    assert latest.version > first.version
    assert latest.expires_at > first.expires_at
    assert json.loads(latest.document)["members"] == json.loads(first.document)["members"]
    kinds = {v["kind"] for v in central_json(fed.dir, "conf", "list")}
    assert kinds == {"publish", "resign"}
    assert json.loads(http_get(f"{fed.url}/health"))["status"] == "ok"

    async def fetch_with_aiohttp() -> gc_io.Fetched | None:
        async with aiohttp.ClientSession() as session:
            return await gc_io.fetch_async(session, f"{fed.url}/globalconf")

    fetched = asyncio.run(fetch_with_aiohttp())
    assert fetched is not None
    again = gc.verify(fetched.document, fetched.signature, store.anchors(), held=latest)
    assert again.version >= latest.version


def test_resigner_follows_a_shorter_validity_at_once(
    tmp_path: Path, spawn: Callable[..., Any]
) -> None:
    """A version published with a shorter validity is re-signed on its own schedule, not
    after a sleep the server computed from the old validity (600 s: it used to sleep 30 s,
    so a 3 s version expired for ~27 s and every node stopped exchanging)."""
    fed = build_registry(tmp_path, spawn)  # the default validity, 600 s
    central(fed.dir, "conf", "publish")
    store = gc_io.ConfStore(tmp_path / "node")
    store.install_anchor(fed.anchor.read_bytes())
    url = f"{fed.url}/globalconf"
    old = store.refresh(url)
    assert old.expires_at - old.generated_at == dt.timedelta(seconds=600)
    time.sleep(1.5)  # the server's re-signer is asleep now, on the old schedule

    central(fed.dir, "settings", "set", "conf_refresh_interval", "1")
    central(fed.dir, "settings", "set", "conf_validity_seconds", "3")
    published = central_json(fed.dir, "conf", "publish")
    first = store.refresh(url)
    assert first.version == published["version"]
    assert first.expires_at - first.generated_at == dt.timedelta(seconds=3)
    # Re-signed a third of the way in, and again, always before the held copy expires.
    seen = [first]
    deadline = time.monotonic() + 6
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
        latest = store.refresh(url)
        assert dt.datetime.now(dt.UTC) < seen[-1].expires_at, "the served copy expired"
        if latest.version != seen[-1].version:
            seen.append(latest)
        assert json.loads(http_get(f"{fed.url}/health"))["status"] == "ok"
    assert len(seen) == 3, f"re-signed {len(seen) - 1} time(s) in 6 s with a 3 s validity"
    assert all(c.expires_at - c.generated_at == dt.timedelta(seconds=3) for c in seen)
    assert seen[1].generated_at - first.generated_at <= dt.timedelta(seconds=2)


def test_key_rotation_nodes_follow_the_announcement(
    tmp_path: Path, spawn: Callable[..., Any]
) -> None:
    fed = build_registry(tmp_path, spawn)
    central(fed.dir, "conf", "publish")
    url = f"{fed.url}/globalconf"
    follower = gc_io.ConfStore(tmp_path / "follower")
    follower.install_anchor(fed.anchor.read_bytes())
    latecomer = gc_io.ConfStore(tmp_path / "latecomer")  # never saw the announcement
    latecomer.install_anchor(fed.anchor.read_bytes())
    old_anchor = gc.load_pem_certs(fed.anchor.read_bytes())[0]
    follower.refresh(url)

    central(fed.dir, "conf", "rotate-key")
    next_anchor = gc.load_pem_certs((fed.dir / "anchor-next.pem").read_bytes())[0]
    announced = follower.refresh(url)
    assert announced.next_anchors == (next_anchor,)
    assert announced.signer == old_anchor
    assert "wait or use --force" in refused(fed.dir, "conf", "activate-key")
    central(fed.dir, "conf", "activate-key", "--force")

    rotated = follower.refresh(url)
    assert rotated.signer == next_anchor
    assert follower.anchors() == [next_anchor]  # the node moved its anchor
    assert follower.load_last_good().version == rotated.version
    with pytest.raises(gc.GlobalConfError, match="not the configuration anchor"):
        latecomer.refresh(url)
    assert gc.load_pem_certs(fed.anchor.read_bytes()) == [next_anchor]
    assert not (fed.dir / "anchor-next.pem").exists()
    # openssl with the new anchor.pem; the retired key can no longer sign for anyone
    (tmp_path / "c.json").write_bytes(rotated.document)
    (tmp_path / "c.sig").write_bytes(rotated.signature)
    proc = subprocess.run(
        [
            "openssl",
            "cms",
            "-verify",
            "-binary",
            "-content",
            str(tmp_path / "c.json"),
            "-in",
            str(tmp_path / "c.sig"),
            "-inform",
            "DER",
            "-CAfile",
            str(fed.anchor),
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    old_key = keys.load_key(fed.dir / "conf-signing.key", b"test-passphrase")
    replay = sign_detached(rotated.document, old_anchor, keys.SoftwareSigner(old_key))
    with pytest.raises(gc.GlobalConfError, match="not the configuration anchor"):
        gc.verify(rotated.document, replay, follower.anchors(), held=rotated)


def test_schema_head_matches_migrations() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from central.store import MIGRATIONS_DIR, SCHEMA_HEAD

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_HEAD


def test_models_match_migrations(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from central.models import Base
    from central.store import Store

    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    store.close()
    assert diff == []


def test_certificate_fingerprints_are_sha256_of_der(test_ca: TestCA) -> None:
    issued = test_ca.issue("auth", "CN=x")
    digest = hashes.Hash(hashes.SHA256())
    digest.update(issued.cert.public_bytes(serialization.Encoding.DER))
    assert cert_sha256_hex(issued.cert) == digest.finalize().hex()


def test_concurrent_publishers_each_get_a_version(tmp_path: Path) -> None:
    """Two processes issuing versions (publish, a running re-signer) never fail each other."""
    directory = tmp_path / "reg"
    in_process("init", str(directory), "--instance", "JP")
    central(directory, "conf", "publish")
    assert publish_concurrently(directory) == []
    assert published_versions(directory) == list(range(1, 14))
