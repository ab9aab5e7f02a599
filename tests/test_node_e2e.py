"""Issue 4 acceptance: a CA with OCSP, a central registry and two cities' nodes, end to end.

Each node makes its keys, has the CA issue certificates from its CSRs, imports
them, registers; the registry operator approves and publishes; after a sync
both nodes' ``secnode status --json`` show them registered, with fresh OCSP
responses and the version the registry serves.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.federation import Federation, build_federation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    federation = build_federation(tmp_path_factory.mktemp("e2e"))
    yield federation
    federation.close()


def served_version(fed: Federation) -> int:
    with urllib.request.urlopen(f"{fed.central_url}/globalconf", timeout=5) as resp:
        return int(json.loads(resp.read())["version"])


def test_both_nodes_registered_with_fresh_ocsp_and_current_conf(fed: Federation) -> None:
    version = served_version(fed)
    for node in fed.nodes.values():
        node.cli("sync")  # the registry may have re-signed since; a sync catches up
        status = node.status()
        assert status["node"] == node.node_id
        assert status["registration"]["state"] == "registered", status["registration"]
        assert status["registration"]["address"] == node.address
        assert [s["registered"] for s in status["subsystems"]] == [True]
        assert status["conf"]["version"] >= version
        assert status["conf"]["expired"] is False
        for usage in ("auth", "sign"):
            cert = status["certificates"][usage]
            assert cert["ocsp"]["status"] == "good"
            assert cert["ocsp"]["fresh"] is True
            assert 0 <= cert["ocsp"]["age_seconds"] < 60
        assert status["health"] == {"status": "ok", "reasons": [], "warnings": []}


def test_registry_lists_each_node_with_its_auth_certificate(fed: Federation) -> None:
    nodes = {n["id"]: n for n in fed.central("node", "list", "--json").json()}
    for node in fed.nodes.values():
        listed = json.loads(node.cli("certs", "list", "--json").stdout)
        auth = next(c for c in listed if c["usage"] == "auth" and c["active"])
        assert nodes[node.node_id]["auth_cert_sha256"] == auth["sha256"]
        assert (node.dir / "certs" / "auth.pem").read_text().startswith("-----BEGIN CERTIFICATE")


def test_status_follows_a_new_version(fed: Federation) -> None:
    version = fed.publish()
    node = fed.nodes["aizu"]
    out = node.cli("sync", "--json").json()
    assert out["conf"]["version"] == version and out["conf"]["changed"] is True
    assert node.status()["conf"]["version"] == version


def test_human_readable_status_and_list(fed: Federation) -> None:
    node = fed.nodes["takamatsu"]
    text = node.cli("status").stdout
    assert "registration:   registered" in text
    assert "health:         ok" in text
    table = node.cli("certs", "list").stdout
    assert "auth" in table and "sign" in table and "good" in table


def test_node_dirs_are_self_contained(fed: Federation) -> None:
    for node in fed.nodes.values():
        assert Path(node.dir, "globalconf", "anchor.pem").exists()
        assert Path(node.dir, "globalconf", "current", "conf.json").exists()
        assert Path(node.dir, "certs", "sign.pem").exists()
