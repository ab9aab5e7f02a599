"""A whole federation on 127.0.0.1 for tests: CA + OCSP responder, central registry, nodes.

Servers are real subprocesses (``certs ocsp serve``, ``central serve``,
``secnode serve``) on ephemeral ports; the one-shot operator commands
(``certs issue``, ``central member add``, ``secnode certs import``, ...) are run
in-process through click, which is the same code minus ~0.8 s of interpreter
start-up per command. That keeps a registered two-node federation at a few
seconds.

Use from a test module::

    from tests.nodefixtures import federation, federation_factory  # noqa: F401 (fixtures)

    def test_something(federation):                 # two registered, synced nodes
        a, b = federation.nodes["aizu"], federation.nodes["takamatsu"]
        a.dir, a.admin_port, a.node_id, a.status()   # paths, ports, ids, status --json
        federation.start_node("aizu")                 # secnode serve; waits for /health
        code, body = a.health()

    def test_custom(federation_factory):
        fed = federation_factory(settings={"conf_validity_seconds": 6}, members=1,
                                 node_config={"ocsp": {"fetch_interval": 1}})

Or build step by step: ``Federation.create(base)``, ``add_node(...)`` with
``register=False`` to stop before registration, then ``approve_all()``,
``sync_all()``.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from tests.conftest import PASSPHRASE, cli_env, free_port, wait_for_port

INSTANCE = "JP"
#: (name, member id, member name) of the cities a federation gets by default, in order.
CITIES: list[tuple[str, str, str]] = [
    ("aizu", f"{INSTANCE}/GOV/072028", "Aizu-Wakamatsu City"),
    ("takamatsu", f"{INSTANCE}/GOV/372013", "Takamatsu City"),
    ("kakogawa", f"{INSTANCE}/GOV/282103", "Kakogawa City"),
    ("sapporo", f"{INSTANCE}/GOV/011002", "Sapporo City"),
]


def cli_command(tool: str) -> click.Command:
    """The click command behind ``certs`` / ``central`` / ``secnode`` (for in-process runs)."""
    if tool == "certs":
        from certs.cli import main as certs_main

        return certs_main
    if tool == "central":
        from central.cli import main as central_main

        return central_main
    from secnode.cli import main as secnode_main

    return secnode_main


class StepFailed(AssertionError):
    """An operator command of the set-up failed; the message has its output."""


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


def invoke(tool: str, *args: str | Path, check: bool = True) -> CliResult:
    """Run ``certs``/``central``/``secnode`` ARGS in-process; raise :class:`StepFailed` on error."""
    argv = [str(a) for a in args]
    env = {"SECNODE_PASSPHRASE": PASSPHRASE.decode(), "SECNODE_DIR": None, "CENTRAL_DIR": None}
    result = CliRunner().invoke(cli_command(tool), argv, env=env, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise StepFailed(
            f"{tool} {shlex.join(argv)} crashed: {result.exception!r}\n{result.output}"
        ) from result.exception
    out = CliResult(result.exit_code, result.stdout, result.stderr)
    if check and out.exit_code != 0:
        raise StepFailed(f"{tool} {shlex.join(argv)} failed ({out.exit_code}):\n{out.output}")
    return out


def set_toml(path: Path, section: str, key: str, value: Any) -> None:
    """Change one ``key = value`` in ``[section]`` of a TOML file, keeping its comments."""
    rendered = json.dumps(value) if not isinstance(value, bool) else str(value).lower()
    lines = path.read_text().splitlines(keepends=True)
    current = None
    for i, line in enumerate(lines):
        header = re.match(r"^\[([A-Za-z_]+)\]", line)
        if header:
            current = header.group(1)
        elif current == section and re.match(rf"^{key}\s*=", line):
            comment = line[line.index("#") :].rstrip("\n") if "#" in line else ""
            lines[i] = f"{key} = {rendered}" + (f"  {comment}" if comment else "") + "\n"
            path.write_text("".join(lines))
            return
    raise KeyError(f"[{section}] {key} not found in {path}")


def http_json(url: str, timeout: float = 5) -> tuple[int, Any]:
    """GET ``url`` asking for JSON (listClients answers XML otherwise); (status, parsed JSON
    body) for 2xx and HTTP errors alike."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}")


@dataclass
class NodeHandle:
    """One security node's directory, ports and identity, with shortcuts for its CLI."""

    name: str
    member: str
    member_name: str
    server_code: str
    dir: Path
    client_port: int
    server_port: int
    admin_port: int
    db_url: str = ""
    subsystems: list[str] = field(default_factory=list)

    @property
    def node_id(self) -> str:
        return f"{self.member}/{self.server_code}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def config_path(self) -> Path:
        return self.dir / "secnode.toml"

    def cert_path(self, usage: str) -> Path:
        """The certificate the CA issued from ``keys/<usage>.csr`` (kept beside the CSR)."""
        return self.dir / "keys" / f"{usage}.pem"

    def cli(self, *args: str | Path, check: bool = True) -> CliResult:
        """``secnode ARGS --dir <this node>`` in-process."""
        return invoke("secnode", *args, "--dir", self.dir, check=check)

    def status(self) -> dict[str, Any]:
        return dict(self.cli("status", "--json").json())

    def set_config(self, section: str, key: str, value: Any) -> None:
        set_toml(self.config_path, section, key, value)

    def health(self, timeout: float = 5) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of the running node's ``/health``."""
        return http_json(f"{self.admin_url}/health", timeout)

    def metrics(self, timeout: float = 5) -> str:
        with urllib.request.urlopen(f"{self.admin_url}/metrics", timeout=timeout) as resp:
            return str(resp.read().decode())


@dataclass
class Federation:
    """CA (+ OCSP responder), central registry (served) and nodes under ``base``."""

    base: Path
    ocsp_port: int
    central_port: int
    nodes: dict[str, NodeHandle] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # ----- layout -------------------------------------------------------------------------
    @property
    def ca_dir(self) -> Path:
        return self.base / "ca"

    @property
    def ca_cert(self) -> Path:
        return self.ca_dir / "ca.pem"

    @property
    def central_dir(self) -> Path:
        return self.base / "central"

    @property
    def anchor(self) -> Path:
        return self.central_dir / "anchor.pem"

    @property
    def ocsp_url(self) -> str:
        return f"http://127.0.0.1:{self.ocsp_port}"

    @property
    def central_url(self) -> str:
        return f"http://127.0.0.1:{self.central_port}"

    def log_path(self, name: str) -> Path:
        return self.base / "logs" / f"{name}.log"

    # ----- commands -----------------------------------------------------------------------
    def certs(self, *args: str | Path, check: bool = True) -> CliResult:
        return invoke("certs", *args, check=check)

    def central(self, *args: str | Path, check: bool = True) -> CliResult:
        """``central ARGS --dir <central>`` (not for ``init``)."""
        return invoke("central", *args, "--dir", self.central_dir, check=check)

    def publish(self) -> int:
        return int(self.central("conf", "publish", "--json").json()["version"])

    def conf_version(self) -> int:
        """The newest version central has (published or re-signed)."""
        versions = self.central("conf", "list", "--limit", "1", "--json").json()
        return int(versions[0]["version"])

    # ----- processes ----------------------------------------------------------------------
    def start(
        self, name: str, tool: str, *args: str | Path, port: int | None = None, timeout: float = 20
    ) -> subprocess.Popen[bytes]:
        """Run a server subprocess with its output in ``logs/NAME.log``; wait for ``port``."""
        log_path = self.log_path(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", tool, *(str(a) for a in args)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=cli_env(),
            )
        self.processes[name] = proc
        if port is not None:
            try:
                wait_for_port(port, timeout)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{self.log(name)}") from exc
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited ({proc.returncode}):\n{self.log(name)}")
        return proc

    def log(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str, timeout: float = 10) -> None:
        proc = self.processes.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def start_ocsp(self, validity: int = 3600) -> None:
        self.start(
            "ocsp",
            "certs",
            "ocsp",
            "serve",
            self.ca_dir,
            "--port",
            str(self.ocsp_port),
            "--validity",
            str(validity),
            port=self.ocsp_port,
        )

    def start_central(self) -> None:
        self.start(
            "central",
            "central",
            "serve",
            "--port",
            str(self.central_port),
            "--dir",
            self.central_dir,
            port=self.central_port,
        )

    def restart_central(self) -> None:
        """After ``central settings set``: a fresh server re-reads the validity at once."""
        self.stop("central")
        self.start_central()

    def start_node(
        self, name: str, wait_healthy: bool = True, timeout: float = 20
    ) -> subprocess.Popen[bytes]:
        """``secnode serve`` for node ``name``; by default waits until ``/health`` says ok."""
        node = self.nodes[name]
        proc = self.start(
            f"node-{name}",
            "secnode",
            "serve",
            "--dir",
            node.dir,
            port=node.admin_port,
            timeout=timeout,
        )
        if wait_healthy:
            wait_until(lambda: node.health()[0] == 200, timeout, f"{name} /health ok")
        return proc

    def stop_node(self, name: str) -> None:
        self.stop(f"node-{name}")

    # ----- building -----------------------------------------------------------------------
    @classmethod
    def create(
        cls, base: Path, settings: dict[str, int] | None = None, start_servers: bool = True
    ) -> Federation:
        """CA with OCSP responder and a central registry approving it; both serving."""
        fed = cls(base, free_port(), free_port())
        base.mkdir(parents=True, exist_ok=True)
        try:
            fed.certs(
                "ca", "init", fed.ca_dir, "--name", "Test Municipal CA", "--ocsp-url", fed.ocsp_url
            )
            if start_servers:
                fed.start_ocsp()
            invoke("central", "init", fed.central_dir, "--instance", INSTANCE)
            fed.central(
                "ca", "add", fed.ca_cert, "--name", "Test Municipal CA", "--ocsp-url", fed.ocsp_url
            )
            for name, value in (settings or {}).items():
                fed.central("settings", "set", name, str(value))
            fed.publish()
            if start_servers:
                fed.start_central()
        except BaseException:
            fed.close()
            raise
        return fed

    def issue(self, csr: Path, profile: str, out: Path, ca_dir: Path | None = None) -> Path:
        """What the CA operator does with a node's CSR."""
        self.certs("issue", ca_dir or self.ca_dir, "--csr", csr, "--profile", profile, "--out", out)
        return out

    def add_node(
        self,
        name: str,
        member: str,
        member_name: str = "",
        *,
        server_code: str = "ss1",
        subsystems: Sequence[str] = ("portal",),
        db_url: str = "",
        config: dict[str, dict[str, Any]] | None = None,
        add_member: bool = True,
        register: bool = True,
    ) -> NodeHandle:
        """A node as its operator sets it up: init, sync, keys, CA issues, import, register.

        ``register=False`` stops after ``secnode init`` and ``secnode sync`` (no keys yet).
        ``config`` edits ``secnode.toml`` right after init (``{"ocsp": {"fetch_interval": 1}}``).
        """
        node = NodeHandle(
            name,
            member,
            member_name or name.title(),
            server_code,
            self.base / name,
            free_port(),
            free_port(),
            free_port(),
            db_url,
            list(subsystems),
        )
        if add_member:
            self.central("member", "add", member, "--name", node.member_name)
        init: list[str | Path] = [
            "init",
            node.dir,
            "--member",
            member,
            "--server-code",
            server_code,
            "--central",
            self.central_url,
            "--anchor",
            self.anchor,
            "--client-port",
            str(node.client_port),
            "--server-port",
            str(node.server_port),
            "--admin-port",
            str(node.admin_port),
            "--address",
            node.address,
        ]
        invoke("secnode", *init, *(["--db", db_url] if db_url else []))
        self.nodes[name] = node
        for section, values in (config or {}).items():
            for key, value in values.items():
                node.set_config(section, key, value)
        node.cli("sync")
        if not register:
            return node
        for usage in ("auth", "sign"):
            node.cli("keys", "new", "--usage", usage, "--org", node.member_name)
            self.issue(node.dir / "keys" / f"{usage}.csr", usage, node.cert_path(usage))
            node.cli("certs", "import", node.cert_path(usage))
        for sub in subsystems:
            node.cli("subsystem", "add", sub)
        node.cli("register")
        return node

    def approve_all(self, publish: bool = True) -> int | None:
        """The registry operator approves every pending request and publishes."""
        for request in self.central("request", "list", "--state", "pending", "--json").json():
            self.central("request", "approve", str(request["id"]))
        return self.publish() if publish else None

    def sync_all(self) -> None:
        for node in self.nodes.values():
            node.cli("sync")


def build_federation(
    base: Path,
    members: int | Sequence[tuple[str, str, str]] = 2,
    *,
    settings: dict[str, int] | None = None,
    node_config: dict[str, dict[str, Any]] | None = None,
    db_urls: dict[str, str] | None = None,
) -> Federation:
    """CA, central and registered nodes, approved, published and synced (status: registered)."""
    cities = CITIES[:members] if isinstance(members, int) else list(members)
    fed = Federation.create(base, settings)
    try:
        for name, member, member_name in cities:
            fed.add_node(
                name, member, member_name, config=node_config, db_url=(db_urls or {}).get(name, "")
            )
        fed.approve_all()
        fed.sync_all()
    except BaseException:
        fed.close()
        raise
    return fed


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
