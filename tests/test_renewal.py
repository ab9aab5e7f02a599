"""Issue 12 item 4, the parts below the end-to-end test (tests/test_auth_renewal.py).

The registry keeps a renewed node's previous auth certificate published, nodes parse
and pin both (and still read documents without the new field), a running node's
``/health`` says ``degraded`` when its auth certificate in use is not in the
configuration, and the switch time follows the configuration's validity.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest

from central import config as config_mod
from central import publish
from central import registry as reg
from central.instance import open_store
from secnode.core import globalconf as gc
from secnode.core import health
from secnode.core.identifiers import NodeId
from secnode.core.jsonfmt import cert_sha256_hex
from secnode.trust import renewal, tls
from tests.conftest import PASSPHRASE, TestCA
from tests.support.registry import in_process

NODE = "JP/GOV/072028/ss1"
NOW = dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)


def _entry(cert: Any, previous: list[Any] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": NODE,
        "owner": "JP/GOV/072028",
        "address": "127.0.0.1:1",
        "auth_cert_sha256": cert_sha256_hex(cert),
        "auth_cert": gc.cert_to_pem(cert),
    }
    if previous is not None:
        entry["previous_auth_certs"] = [
            {"sha256": cert_sha256_hex(c), "cert": gc.cert_to_pem(c)} for c in previous
        ]
    return entry


def _node(entry: dict[str, Any]) -> gc.ConfNode:
    raw = {
        "format": gc.FORMAT,
        "instance": "JP",
        "version": 1,
        "generated_at": "2026-04-01T09:00:00Z",
        "expires_at": "2026-04-01T09:10:00Z",
        "members": [],
        "nodes": [entry],
        "approved_cas": [],
        "approved_tsas": [],
        "groups": [],
        "settings": dict(gc.SETTINGS_DEFAULTS),
        "next_anchors": [],
    }
    return gc._parse_document(raw)["nodes"][0]


def test_conf_node_entry_with_and_without_previous_auth_certs(test_ca: TestCA) -> None:
    old, new = test_ca.issue("auth", "CN=old"), test_ca.issue("auth", "CN=new")
    plain = _node(_entry(old.cert))  # documents from before this change
    assert plain.auth_cert_hashes == (cert_sha256_hex(old.cert),)
    both = _node(_entry(new.cert, [old.cert]))
    assert both.auth_cert_hashes == (cert_sha256_hex(new.cert), cert_sha256_hex(old.cert))
    assert both.has_auth_cert(cert_sha256_hex(old.cert)) and both.auth_certs[1] == old.cert
    forged = _entry(new.cert, [old.cert])
    forged["previous_auth_certs"][0]["sha256"] = cert_sha256_hex(new.cert)
    with pytest.raises(gc.GlobalConfError, match="sha256 does not match"):
        _node(forged)


def _serve_once(cert: Path, key: Path, ready: threading.Event, port: list[int]) -> None:
    import socket

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key, password=PASSPHRASE)
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port.append(srv.getsockname()[1])
        ready.set()
        conn, _ = srv.accept()
        with conn:
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls_conn:
                    tls_conn.recv(1)
            except (ssl.SSLError, OSError):
                pass


def _handshake(ctx: ssl.SSLContext, server: Any) -> bool:
    import socket

    ready, port = threading.Event(), []
    thread = threading.Thread(
        target=_serve_once, args=(server.cert_path, server.key_path, ready, port)
    )
    thread.start()
    ready.wait(5)
    try:
        with (
            socket.create_connection(("127.0.0.1", port[0]), timeout=5) as raw,
            ctx.wrap_socket(raw),
        ):
            return True
    except ssl.SSLError:
        return False
    finally:
        thread.join(5)


def test_pinned_context_accepts_any_registered_certificate(test_ca: TestCA) -> None:
    """A peer being renewed may present the old or the new certificate; no one else."""
    me, old, new = (test_ca.issue("auth", f"CN={n}") for n in ("me", "old", "new"))
    stranger = test_ca.issue("auth", "CN=stranger")  # same CA, not registered for the node
    ctx = tls.pinned_client_context(me.cert_path, me.key_path, PASSPHRASE, [new.cert, old.cert])
    assert _handshake(ctx, old) and _handshake(ctx, new)
    assert not _handshake(ctx, stranger)


def test_registry_keeps_the_replaced_certificate_until_dropped(
    tmp_path: Path, test_ca: TestCA
) -> None:
    directory = tmp_path / "central"
    in_process("init", str(directory), "--instance", "JP")
    for step in (
        ("ca", "add", str(test_ca.cert_path)),
        ("member", "add", "JP/GOV/072028", "--name", "Aizu"),
    ):
        in_process(*step, "--dir", str(directory))
    old, new = test_ca.issue("auth", "CN=old"), test_ca.issue("auth", "CN=new")
    in_process(
        "node",
        "add",
        NODE,
        "--address",
        "127.0.0.1:1",
        "--auth-cert",
        str(old.cert_path),
        "--dir",
        str(directory),
    )
    store = open_store(config_mod.load(directory))
    try:
        with store.read() as s:  # no renewal: the entry has exactly the former fields
            assert "previous_auth_certs" not in publish.snapshot(s, "JP")["nodes"][0]
        with store.change("test", "request.approve") as (s, _):
            reg.put_node(s, NodeId.parse(NODE), "127.0.0.1:1", new.cert, replace=True)
        with store.read() as s:
            entry = publish.snapshot(s, "JP")["nodes"][0]
        assert entry["auth_cert_sha256"] == cert_sha256_hex(new.cert)
        assert entry["previous_auth_certs"] == [
            {"sha256": cert_sha256_hex(old.cert), "cert": gc.cert_to_pem(old.cert)}
        ]
        assert _node(json.loads(json.dumps(entry))).has_auth_cert(cert_sha256_hex(old.cert))
        in_process("node", "drop-previous-auth-cert", NODE, "--dir", str(directory))
        with store.read() as s:
            assert "previous_auth_certs" not in publish.snapshot(s, "JP")["nodes"][0]
        gone = in_process(
            "node", "drop-previous-auth-cert", NODE, "--dir", str(directory), check=False
        )
        assert gone.returncode == 1 and "no previous auth certificate" in gone.stderr
    finally:
        store.close()


def _cert_view(usage: str) -> health.CertView:
    return health.CertView(
        usage,
        f"CN={usage}",
        "ab" * 32,
        NOW - dt.timedelta(days=1),
        NOW + dt.timedelta(days=300),
        "good",
        NOW - dt.timedelta(seconds=5),
    )


def test_health_is_degraded_when_the_auth_certificate_in_use_is_not_registered() -> None:
    conf = health.ConfView(7, NOW - dt.timedelta(seconds=10), NOW + dt.timedelta(seconds=300))
    certs = {u: _cert_view(u) for u in health.USAGES}
    result = health.assess("n", conf, certs, NOW, registered=False)
    assert (result.status, result.http_status) == ("degraded", 200)
    assert any("peers refuse its connections" in w for w in result.warnings)
    assert health.assess("n", conf, certs, NOW, registered=True).status == "ok"
    pending = {"sha256": "cd" * 32, "listed": False, "listed_at": None, "switch_at": None}
    waiting = health.assess("n", conf, certs, NOW, registered=True, pending_auth=pending)
    assert waiting.status == "ok" and "awaits registration" in waiting.warnings[0]
    assert waiting.report["pending_auth_certificate"] == pending


def test_switch_waits_for_every_older_configuration_to_expire(test_ca: TestCA) -> None:
    new = test_ca.issue("auth", "CN=new")
    raw = {
        "format": gc.FORMAT,
        "instance": "JP",
        "version": 3,
        "generated_at": "2026-04-01T09:00:00Z",
        "expires_at": "2026-04-01T09:10:00Z",
        "members": [],
        "nodes": [_entry(new.cert)],
        "approved_cas": [],
        "approved_tsas": [],
        "groups": [],
        "next_anchors": [],
        "settings": dict(gc.SETTINGS_DEFAULTS, conf_validity_seconds=600, conf_refresh_interval=60),
    }
    conf = gc.GlobalConf(b"", b"", new.cert, **gc._parse_document(raw))
    assert renewal.switch_delay(conf) == dt.timedelta(seconds=660)
