"""The central registry tests' world: a registry directory with a CA, a TSA, two members,
a group and a serving ``central serve`` (no nodes: registrations are made by hand with
library certificates), and the acceptance scenario both storage back ends run.

Not built with :class:`secnode.demo.federation.Federation`: these tests need the CA's
certificates as objects (:class:`tests.support.pki.Issued`) and run every acceptance step
through a chosen runner (a real subprocess, or in-process for set-up).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from central import config as config_mod
from central import registry as reg
from central.cli import main
from central.instance import open_store
from central.models import ConfVersion
from certs import keys
from secnode import globalconf as gc_io
from secnode.core import globalconf as gc
from secnode.core import registration as rc
from secnode.core.identifiers import MemberId, NodeId, SubsystemId
from tests.support.common import (
    cli_env,
    free_port,
    http_get,
    run_cli,
)
from tests.support.pki import Issued, TestCA, make_ca

AIZU = "JP/GOV/072028"
KAKO = "JP/GOV/282103"


# ----- helpers ----------------------------------------------------------------------------
Runner = Callable[..., subprocess.CompletedProcess[str]]


def in_process(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The same click command tree without the ~1 s interpreter start (setup steps).

    The acceptance tests run every step as a real subprocess (:func:`run_cli`).
    """
    result = CliRunner().invoke(main, list(args), env={"SECNODE_PASSPHRASE": "test-passphrase"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    proc = subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"central {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def subprocess_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cli("central", *args, check=check)


def central(
    directory: Path, *args: str, check: bool = True, cli: Runner = in_process
) -> subprocess.CompletedProcess[str]:
    return cli(*args, "--dir", str(directory), check=check)


def central_json(directory: Path, *args: str, cli: Runner = in_process) -> Any:
    return json.loads(central(directory, *args, "--json", cli=cli).stdout)


def refused(directory: Path, *args: str, cli: Runner = in_process) -> str:
    """Run a command that must fail; return its one-line error."""
    proc = central(directory, *args, check=False, cli=cli)
    assert proc.returncode == 1, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def counts(directory: Path) -> dict[str, int]:
    store = open_store(config_mod.load(directory))
    try:
        return reg.counts(store)
    finally:
        store.close()


def post(url: str, data: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:  # its response holds the connection
            return exc.code, json.loads(exc.read())


def signer(issued: Issued) -> keys.SoftwareSigner:
    return keys.SoftwareSigner(issued.key)


@dataclass
class NodeCerts:
    auth: Issued
    sign: Issued


def node_certs(ca: TestCA, member: str, host: str) -> NodeCerts:
    return NodeCerts(
        auth=ca.issue("auth", f"CN={host}, O=City, C=JP"),
        sign=ca.issue("sign", f"serialNumber={member}, O=City, C=JP"),
    )


def registration(certs: NodeCerts, node: str, address: str, subsystems: list[str]) -> bytes:
    return rc.build_request(
        NodeId.parse(node),
        address,
        certs.auth.cert,
        signer(certs.auth),
        certs.sign.cert,
        signer(certs.sign),
        [SubsystemId.parse(s) for s in subsystems],
    )


@dataclass
class RegistryWorld:
    dir: Path
    ca: TestCA
    tsa: Issued
    url: str
    node: NodeCerts

    @property
    def anchor(self) -> Path:
        return self.dir / "anchor.pem"


def build_registry(
    tmp_path: Path,
    spawn: Callable[..., Any],
    db_url: str | None = None,
    settings: dict[str, int] | None = None,
    cli: Runner = in_process,
) -> RegistryWorld:
    """init, CA, TSA, two members with subsystems, a group, serve."""
    directory = tmp_path / "central"
    ca = make_ca(tmp_path, "Federation CA", ocsp_url="http://127.0.0.1:9/ocsp")
    cli("init", str(directory), "--instance", "JP", *(["--db", db_url] if db_url else []))
    steps: list[tuple[str, ...]] = [
        ("ca", "add", str(ca.cert_path), "--ocsp-url", "http://127.0.0.1:9/ocsp"),
        ("member", "add", AIZU, "--name", "Aizu-Wakamatsu City"),
        ("member", "add", KAKO, "--name", "Kakogawa City"),
        ("subsystem", "add", f"{AIZU}/residents"),
        ("subsystem", "add", f"{KAKO}/tax"),
    ]
    tsa = ca.issue("tsa", "CN=Test TSA, O=Trust, C=JP")
    steps.insert(
        1, ("tsa", "add", "tsa1", "--url", "http://127.0.0.1:9/tsa", "--cert", str(tsa.cert_path))
    )
    for step in steps:
        central(directory, *step, cli=cli)
    # beyond the acceptance scenario: in-process to keep the suite fast
    central(directory, "group", "add", "municipalities", "--description", "All cities")
    central(directory, "group", "add-member", "municipalities", AIZU)
    for name, value in (settings or {}).items():
        central(directory, "settings", "set", name, str(value))
    port = free_port()
    spawn(
        "central",
        "serve",
        "--dir",
        str(directory),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        port=port,
    )
    return RegistryWorld(
        directory, ca, tsa, f"http://127.0.0.1:{port}", node_certs(ca, AIZU, "ss1.aizu.example")
    )


def run_end_to_end(
    tmp_path: Path, spawn: Callable[..., Any], db_url: str | None, cli: Runner = subprocess_cli
) -> RegistryWorld:
    """The acceptance scenario: its CLI steps through ``cli``, the server and node over HTTP.

    Inspection steps (list, show, verify) run in-process to keep the suite fast.
    """
    fed = build_registry(tmp_path, spawn, db_url, cli=cli)
    # 1. a node registers over HTTP with both signatures; it waits for approval
    status, answer = post(
        f"{fed.url}/register",
        registration(fed.node, f"{AIZU}/ss1", "ss1.aizu.example:5500", [f"{AIZU}/records"]),
    )
    assert status == 202, answer
    assert answer["state"] == "pending"
    pending = central_json(fed.dir, "request", "list", "--state", "pending")
    assert [r["node"] for r in pending] == [f"{AIZU}/ss1"]
    shown = central_json(fed.dir, "request", "show", str(answer["id"]))
    assert shown["sign_cert_member"] == AIZU
    # not visible before approval + publish
    central(fed.dir, "conf", "publish")
    store = gc_io.ConfStore(tmp_path / "node" / "globalconf")
    store.install_anchor(fed.anchor.read_bytes())
    before = store.refresh(f"{fed.url}/globalconf")
    assert before.node_for_member(MemberId.parse(AIZU)) == []
    # 2. approve and publish
    central(fed.dir, "request", "approve", str(answer["id"]), cli=cli)
    published = central_json(fed.dir, "conf", "publish", cli=cli)
    assert published["version"] == before.version + 1
    # 3. the node-side client fetches, verifies and answers lookups
    conf = store.refresh(f"{fed.url}/globalconf")
    assert conf.version == published["version"]
    assert conf.instance == "JP"
    nodes = conf.node_for_member(SubsystemId.parse(f"{AIZU}/residents"))
    assert [str(n.id) for n in nodes] == [f"{AIZU}/ss1"]
    assert nodes[0].address == "ss1.aizu.example:5500"
    assert nodes[0].auth_cert == fed.node.auth.cert
    assert conf.is_auth_cert_registered(fed.node.auth.cert, MemberId.parse(AIZU))
    assert not conf.is_auth_cert_registered(fed.node.auth.cert, MemberId.parse(KAKO))
    assert not conf.is_auth_cert_registered(fed.node.sign.cert, MemberId.parse(AIZU))
    assert conf.approved_ca_for(fed.node.sign.cert) is not None
    assert conf.approved_ca_for(fed.node.sign.cert).ocsp_urls == ("http://127.0.0.1:9/ocsp",)
    assert conf.is_tsa_approved(fed.tsa.cert)
    assert conf.is_tsa_approved("http://127.0.0.1:9/tsa")
    assert not conf.is_tsa_approved(fed.node.auth.cert)
    assert set(map(str, conf.subsystems)) == {f"{AIZU}/records", f"{AIZU}/residents", f"{KAKO}/tax"}
    assert conf.groups_of(MemberId.parse(AIZU)) == ["municipalities"]
    assert conf.settings == gc.SETTINGS_DEFAULTS
    assert dt.timedelta(seconds=599) <= conf.expires_at - conf.generated_at
    assert store.load_last_good().version == conf.version
    # 4. openssl accepts exactly what the server serves
    document = http_get(f"{fed.url}/globalconf")
    signature = http_get(f"{fed.url}/globalconf.sig?version={conf.version}")
    assert document == conf.document
    (tmp_path / "conf.json").write_bytes(document)
    (tmp_path / "conf.sig").write_bytes(signature)
    proc = subprocess.run(
        [
            "openssl",
            "cms",
            "-verify",
            "-binary",
            "-content",
            str(tmp_path / "conf.json"),
            "-in",
            str(tmp_path / "conf.sig"),
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
    assert "Verification successful" in proc.stderr
    # and our own CLI verifier agrees
    out = json.loads(
        in_process(
            "conf",
            "verify",
            str(tmp_path / "conf.json"),
            str(tmp_path / "conf.sig"),
            "--anchor",
            str(fed.anchor),
            "--json",
        ).stdout
    )
    assert out["version"] == conf.version and out["nodes"] == 1
    # 5. caching: an unchanged version answers 304
    request = urllib.request.Request(f"{fed.url}/globalconf", headers={"If-None-Match": conf.etag})
    with pytest.raises(urllib.error.HTTPError, match=r"^HTTP Error 304: ") as not_modified:
        urllib.request.urlopen(request, timeout=10)
    assert not_modified.value.code == 304
    not_modified.value.close()
    assert store.refresh(f"{fed.url}/globalconf") == conf
    return fed


def publish_concurrently(directory: Path, processes: int = 4, each: int = 3) -> list[str]:
    """``central conf publish`` from several real processes at once; their error outputs."""
    script = (
        f'for i in $(seq {each}); do "{sys.executable}" -m central conf publish '
        f'--dir "{directory}" >/dev/null || exit 1; done'
    )
    procs = [
        subprocess.Popen(["sh", "-c", script], env=cli_env(), stderr=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    return [
        err for proc in procs for err in [proc.communicate(timeout=120)[1]] if proc.returncode != 0
    ]


def published_versions(directory: Path) -> list[int]:
    store = open_store(config_mod.load(directory))
    try:
        with store.read() as s:
            return sorted(s.scalars(select(ConfVersion.version)))
    finally:
        store.close()
