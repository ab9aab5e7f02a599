"""A running node applies the newest verified configuration on disk, whoever fetched it.

Issue 12 item 3: ``secnode sync`` while the node serves, or a version fetched by a
sibling ``secnode serve`` sharing the node directory, used to wait for the running
process's own fetch to see a *version change* (that is, for the registry's next
re-signing). Here the running node's own fetch interval is an hour, so only the
copy on disk can explain what it applies. Everything is real: OCSP responder,
``central serve``, ``secnode serve`` processes; the observables are ``/health`` and
the ``listClients`` metaservice, both answered from the configuration in use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, run_cli
from tests.support.common import http_json, set_toml, wait_until
from tests.support.federation import Federation, NodeHandle

Factory = Callable[..., Federation]

pytestmark = pytest.mark.slow

#: The running node's own fetches: one at start, the next an hour later (see the docstring).
SLOW_FETCH = {"central": {"refresh_interval": 3600}}
NEWCOMER = "JP/GOV/999001"


def conf_in_use(admin_url: str) -> dict[str, Any]:
    return dict(http_json(f"{admin_url}/health")[1]["conf"])


def client_ids(client_url: str) -> set[str]:
    """Names listClients answers with: it is answered from the configuration in use."""
    code, body = http_json(f"{client_url}/listClients")
    assert code == 200, body
    return {item["name"] for item in body["member"]}


def test_running_node_applies_what_secnode_sync_fetched(federation_factory: Factory) -> None:
    fed = federation_factory(members=1, node_config=SLOW_FETCH)
    node = fed.nodes["aizu"]
    fed.start_node("aizu")
    started = time.monotonic()
    held = conf_in_use(node.admin_url)["version"]

    # New member, new CA and a changed setting in one published version.
    fed.central("member", "add", NEWCOMER, "--name", "Newcomer Town")
    other = fed.base / "second-ca"
    fed.certs("ca", "init", other, "--name", "Second CA", "--ocsp-url", fed.ocsp_url)
    fed.central("ca", "add", other / "ca.pem", "--ocsp-url", fed.ocsp_url)
    fed.central("settings", "set", "conf_validity_seconds", "900")
    version = fed.publish()
    assert version > held
    # The operator syncs by hand (a separate process) while the node serves.
    run_cli("secnode", "sync", "--dir", str(node.dir))
    conf = wait_until(
        lambda: (c := conf_in_use(node.admin_url))["version"] == version and c,
        5,
        "the running node to apply the version secnode sync kept",
    )
    assert time.monotonic() - started < 50  # its own next fetch is an hour away
    assert "Newcomer Town" in client_ids(node.client_url)  # new member, on the message path
    assert conf["seconds_to_expiry"] > 600  # the new validity (was 600)
    log = fed.log("node-aizu")
    assert f"now using global configuration version {version} (was {held}" in log
    assert "approved CAs changed (1 added, 0 removed)" in log  # TLS trust and sessions
    assert f"-> {version}" not in log  # its own fetch did not bring it

    # A removed member disappears the same way.
    fed.central("member", "remove", NEWCOMER)
    removed = fed.publish()
    node.cli("sync")
    wait_until(
        lambda: conf_in_use(node.admin_url)["version"] == removed,
        5,
        "the running node to apply the removal",
    )
    assert "Newcomer Town" not in client_ids(node.client_url)


def sibling_dir(node: NodeHandle, base: Path) -> tuple[Path, int, int]:
    """A second process's directory on the same node: own ports and fetch interval, but the
    node's database, keys, certificates and ``globalconf/`` (links into the first one)."""
    second = base / f"{node.name}-2"
    second.mkdir()
    text = (node.dir / "secnode.toml").read_text()
    (second / "secnode.toml").write_text(text)
    for shared in ("keys", "certs", "globalconf"):
        (second / shared).symlink_to(node.dir / shared)
    client_port, admin_port = free_port(), free_port()
    toml = second / "secnode.toml"
    set_toml(toml, "database", "url", node.db_url or f"sqlite:///{node.dir / 'secnode.db'}")
    set_toml(toml, "client", "port", client_port)
    set_toml(toml, "server", "port", free_port())
    set_toml(toml, "admin", "port", admin_port)
    set_toml(toml, "central", "refresh_interval", 3600)
    return second, client_port, admin_port


def test_second_process_applies_the_version_its_sibling_fetched(
    federation_factory: Factory,
) -> None:
    fed = federation_factory(members=1, node_config={"central": {"refresh_interval": 1}})
    node = fed.nodes["aizu"]
    second, client_port, admin_port = sibling_dir(node, fed.base)
    fed.start_node("aizu")  # fetches every second
    fed.start("node-aizu-2", "secnode", "serve", "--dir", second, port=admin_port)
    admin_2, client_2 = f"http://127.0.0.1:{admin_port}", f"http://127.0.0.1:{client_port}"
    wait_until(lambda: http_json(f"{admin_2}/health")[0] == 200, 20, "the second process")
    held = conf_in_use(admin_2)["version"]

    fed.central("member", "add", NEWCOMER, "--name", "Newcomer Town")
    version = fed.publish()
    wait_until(
        lambda: f"-> {version}" in fed.log("node-aizu"),
        5,
        "the first process to fetch the new version",
    )
    wait_until(
        lambda: conf_in_use(admin_2)["version"] == version,
        4,
        "the second process to apply the version its sibling fetched",
    )
    assert "Newcomer Town" in client_ids(client_2)
    log = fed.log("node-aizu-2")
    assert f"now using global configuration version {version} (was {held}" in log
    assert f"-> {version}" not in log
