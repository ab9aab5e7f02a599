"""Build and run a federation on this machine, step by step, with the normal CLIs.

Every step is what an operator would type (``certs``, ``central``, ``secnode``), so a
federation built here doubles as an executable version of docs/operations.md and leaves
directories those commands keep working on. The steps, in order::

    fed = Federation(base)          # runner: subprocesses (the demo) or in-process (tests)
    fed.prepare()                   # the directory (and a passphrase file)
    fed.pki()                       # CA + OCSP responder (serving), optionally a TSA
    fed.registry()                  # central: CA (+ TSA) approved, published, serving
    fed.add_node("aizu", member)    # init, sync, keys, CA issues, import, register request
    fed.register()                  # approve every request, publish, every node syncs
    fed.add_service(...)            # service + access right (+ classification)
    fed.start_nodes()               # secnode serve, until /health says ok
    fed.stop()

Used by ``secnode demo`` (:mod:`secnode.demo.two_cities`), the benchmark and the tests
(``tests/support``). Servers are subprocesses with their output in ``logs/NAME.log``.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from secnode.demo.node import (
    CliResult,
    DemoError,
    NodeHandle,
    Runner,
    command_env,
    subprocess_runner,
)
from secnode.demo.ports import free_port

INSTANCE = "JP"

__all__ = ["INSTANCE", "CliResult", "DemoError", "Federation", "NodeHandle"]


@dataclass
class Federation:
    """A CA with OCSP, optionally a TSA, a central registry and nodes under ``base``."""

    base: Path
    say: Callable[[str], None] = print
    passphrase: str = ""
    #: How one-shot commands run; None: as subprocesses, like an operator's shell.
    runner: Runner | None = None
    #: How long a server may take to listen or a node to become healthy.
    timeout: float = 30
    #: Added to the environment of every server process (e.g. PYTHONPATH).
    extra_env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, NodeHandle] = field(default_factory=dict)
    services: list[dict[str, Any]] = field(default_factory=list)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # ----- layout -------------------------------------------------------------------------
    @property
    def ca_dir(self) -> Path:
        return self.base / "ca"

    @property
    def ca_cert(self) -> Path:
        return self.ca_dir / "ca.pem"

    @property
    def tsa_dir(self) -> Path:
        return self.base / "tsa"

    @property
    def central_dir(self) -> Path:
        return self.base / "central"

    @property
    def anchor(self) -> Path:
        return self.central_dir / "anchor.pem"

    @property
    def ocsp_port(self) -> int:
        return self.ports["ocsp"]

    @property
    def tsa_port(self) -> int:
        return self.ports["tsa"]

    @property
    def central_port(self) -> int:
        return self.ports["central"]

    @property
    def ocsp_url(self) -> str:
        return f"http://127.0.0.1:{self.ocsp_port}"

    @property
    def tsa_url(self) -> str:
        return f"http://127.0.0.1:{self.tsa_port}"

    @property
    def central_url(self) -> str:
        return f"http://127.0.0.1:{self.central_port}"

    def log_path(self, name: str) -> Path:
        return self.base / "logs" / f"{name}.log"

    def log(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    # ----- commands -----------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        return command_env(self.passphrase, self.extra_env)

    def invoke(self, tool: str, *args: str | Path, check: bool = True) -> CliResult:
        """``tool ARGS`` through the runner; a failure raises (unless ``check=False``)."""
        runner = self.runner or subprocess_runner(self.env)
        return runner(tool, [str(a) for a in args], check)

    def run(self, tool: str, *args: str | Path) -> str:
        """Run an operator command; returns its standard output."""
        return self.invoke(tool, *args).stdout

    def certs(self, *args: str | Path, check: bool = True) -> CliResult:
        return self.invoke("certs", *args, check=check)

    def central(self, *args: str | Path, check: bool = True) -> CliResult:
        """``central ARGS --dir <central>`` (not for ``init``)."""
        return self.invoke("central", *args, "--dir", self.central_dir, check=check)

    def publish(self) -> int:
        return int(self.central("conf", "publish", "--json").json()["version"])

    def conf_version(self) -> int:
        """The newest version central has (published or re-signed)."""
        versions = self.central("conf", "list", "--limit", "1", "--json").json()
        return int(versions[0]["version"])

    def issue(self, csr: Path, profile: str, out: Path, ca_dir: Path | None = None) -> Path:
        """What the CA operator does with a node's CSR."""
        self.certs("issue", ca_dir or self.ca_dir, "--csr", csr, "--profile", profile, "--out", out)
        return out

    # ----- processes ----------------------------------------------------------------------
    def start(
        self,
        name: str,
        tool: str,
        *args: str | Path,
        port: int | None = None,
        timeout: float | None = None,
    ) -> subprocess.Popen[bytes]:
        """Run a server subprocess with its output in ``logs/NAME.log``; wait for ``port``."""
        log_path = self.log_path(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", tool, *(str(a) for a in args)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.env(),
                start_new_session=True,
            )
        self.processes[name] = proc
        if port is not None:
            self.wait_port(name, port, timeout)
        return proc

    def wait_port(self, name: str, port: int, timeout: float | None = None) -> None:
        """Until ``port`` accepts connections; fails with the log if ``name`` exits first."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        proc = self.processes.get(name)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise DemoError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-4000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise DemoError(
            f"{name} is not listening on port {port} after {limit:g} s:\n{self.log(name)[-4000:]}"
        )

    def stop(self, name: str | None = None, timeout: float = 10) -> None:
        """Stop server ``name`` (SIGTERM, then SIGKILL after ``timeout``); None: all of them."""
        names = list(self.processes) if name is None else [name]
        procs = [p for p in (self.processes.pop(n, None) for n in names) if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        self.stop()

    def start_ocsp(self, validity: int | None = None) -> None:
        extra = ["--validity", str(validity)] if validity is not None else []
        port = self.ports["ocsp"]
        self.start(
            "ocsp", "certs", "ocsp", "serve", self.ca_dir, "--port", str(port), *extra, port=port
        )

    def start_tsa(self) -> None:
        port = self.ports["tsa"]
        self.start("tsa", "certs", "tsa", "serve", self.tsa_dir, "--port", str(port), port=port)

    def stop_tsa(self) -> None:
        self.stop("tsa")

    def start_central(self) -> None:
        port = self.ports["central"]
        self.start(
            "central", "central", "serve", "--port", str(port), "--dir", self.central_dir, port=port
        )

    def restart_central(self) -> None:
        """After ``central settings set``: a fresh server re-reads the validity at once."""
        self.stop("central")
        self.start_central()

    def backend(self, name: str) -> int:
        """Start the sample REST/SOAP services (:mod:`secnode.demo.services`) as ``name``."""
        port = self.ports.setdefault(name, free_port())
        self.start(name, "secnode.demo.services", "--port", str(port), port=port)
        return port

    def start_node(
        self, node: NodeHandle | str, wait_healthy: bool = True, timeout: float | None = None
    ) -> subprocess.Popen[bytes]:
        """``secnode serve`` for ``node``; by default waits until ``/health`` says ok and
        all three listeners accept connections."""
        handle = self.nodes[node] if isinstance(node, str) else node
        name = f"node-{handle.name}"
        proc = self.start(
            name, "secnode", "serve", "--dir", handle.dir, port=handle.admin_port, timeout=timeout
        )
        if wait_healthy:
            self.wait_healthy(handle, timeout)
            self.wait_port(name, handle.client_port, timeout)
            self.wait_port(name, handle.server_port, timeout)
        return proc

    def start_nodes(self, names: Iterable[str] | None = None) -> None:
        for name in list(self.nodes) if names is None else names:
            self.start_node(name)

    def stop_node(self, name: str) -> None:
        self.stop(f"node-{name}")

    def wait_healthy(self, node: NodeHandle, timeout: float | None = None) -> dict[str, Any]:
        """Until the node's ``/health`` answers 200; its body."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        last: Any = None
        while time.monotonic() < deadline:
            proc = self.processes.get(f"node-{node.name}")
            if proc is not None and proc.poll() is not None:
                raise DemoError(f"node {node.name} exited with {proc.returncode}")
            try:
                status, body = node.health()
                if status == 200:
                    return body
                last = (status, body)
            except (OSError, ValueError) as exc:
                last = exc
            time.sleep(0.1)
        raise DemoError(f"node {node.name} is not healthy after {limit:g} s: {last!r}")

    # ----- building -----------------------------------------------------------------------
    def prepare(self, fresh: bool = False) -> None:
        """The base directory and the key passphrase (a new one, in ``passphrase``, unless
        given). ``fresh``: an old demo directory is wiped; any other non-empty one refused."""
        if fresh and self.base.exists() and any(self.base.iterdir()):
            if not (self.base / "demo.json").exists() and not self.ca_dir.exists():
                raise DemoError(
                    f"{self.base} is not empty and not a demo directory; choose another --dir"
                )
            shutil.rmtree(self.base)
        self.base.mkdir(parents=True, exist_ok=True)
        if not self.passphrase:
            self.passphrase = secrets.token_urlsafe(24)
            pw = self.base / "passphrase"
            pw.write_text(self.passphrase + "\n")
            pw.chmod(0o600)

    def pki(
        self,
        ca_name: str = "Demo Municipal CA",
        tsa_name: str | None = "Demo TSA",
        start: bool = True,
    ) -> None:
        """A CA with its OCSP responder and, unless ``tsa_name`` is None, an RFC 3161 TSA."""
        self.ports.setdefault("ocsp", free_port())
        self.say("* certificate authority with OCSP responder")
        self.certs("ca", "init", self.ca_dir, "--name", ca_name, "--ocsp-url", self.ocsp_url)
        if start:
            self.start_ocsp()
        if tsa_name is not None:
            self.tsa(tsa_name, start)

    def tsa(self, name: str = "Demo TSA", start: bool = True) -> None:
        """An RFC 3161 time-stamping authority certified by the CA (``tsa/``)."""
        self.ports.setdefault("tsa", free_port())
        self.say("* time-stamping authority (RFC 3161)")
        self.certs("tsa", "init", self.tsa_dir, "--ca", self.ca_dir, "--name", name)
        if start:
            self.start_tsa()

    def registry(
        self,
        ca_name: str = "Demo CA",
        tsa_id: str | None = "demo-tsa",
        settings: dict[str, int] | None = None,
        start: bool = True,
    ) -> None:
        """The central registry: the CA (and the TSA, as ``tsa_id``) approved, ``settings``
        set, the first configuration published; serving unless ``start`` is False."""
        self.ports.setdefault("central", free_port())
        self.say("* central registry")
        self.invoke("central", "init", self.central_dir, "--instance", INSTANCE)
        self.central("ca", "add", self.ca_cert, "--name", ca_name, "--ocsp-url", self.ocsp_url)
        if tsa_id is not None:
            self.add_tsa(tsa_id, self.tsa_url, self.tsa_dir / "tsa.pem")
        for name, value in (settings or {}).items():
            self.central("settings", "set", name, str(value))
        self.publish()
        if start:
            self.start_central()

    def add_tsa(self, tsa_id: str, url: str, cert: Path) -> None:
        self.central("tsa", "add", tsa_id, "--url", url, "--cert", cert)

    def add_node(
        self,
        name: str,
        member: str,
        member_name: str = "",
        *,
        server_code: str = "ss1",
        subsystems: Sequence[str] = ("portal",),
        provider_subsystem: str = "",
        db_url: str = "",
        config: dict[str, dict[str, Any]] | None = None,
        add_member: bool = True,
        register: bool = True,
        console: bool = False,
    ) -> NodeHandle:
        """A node as its operator sets it up: init, sync, keys, CA issues, import, register.

        ``register=False`` stops after ``secnode init`` and ``secnode sync`` (no keys yet).
        ``config`` edits ``secnode.toml`` right after init (``{"ocsp": {"fetch_interval": 1}}``).
        ``console``: HTTPS on the admin listener (the web console) and the disclosure page.
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
            provider_subsystem=provider_subsystem,
            run=self.runner or subprocess_runner(self.env),
        )
        self.say(f"* node {member}/{server_code} ({node.member_name})")
        if add_member:
            self.central("member", "add", member, "--name", node.member_name)
        self.invoke("secnode", *self._init_args(node))
        self.nodes[name] = node
        for section, values in (config or {}).items():
            for key, value in values.items():
                node.set_config(section, key, value)
        node.cli("sync")
        if console:
            self.enable_console(node)
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

    def _init_args(self, node: NodeHandle) -> list[str | Path]:
        args: list[str | Path] = [
            "init",
            node.dir,
            "--member",
            node.member,
            "--server-code",
            node.server_code,
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
        return args + (["--db", node.db_url] if node.db_url else [])

    def enable_console(self, node: NodeHandle) -> None:
        """HTTPS for the admin listener (with it the web console) and the disclosure page.

        No account is made: the operator adds one with ``secnode admin user add``.
        """
        node.cli("admin", "tls-cert")
        node.disclosure_port = node.disclosure_port or free_port()
        for section in ("admin", "disclosure"):
            node.set_config(section, "tls_cert", "console-tls.pem")
            node.set_config(section, "tls_key", "console-tls.key")
        node.set_config("disclosure", "port", node.disclosure_port)
        node.admin_tls = True

    def approve_all(self, publish: bool = True) -> int | None:
        """The registry operator approves every pending request and publishes."""
        for request in self.central("request", "list", "--state", "pending", "--json").json():
            self.central("request", "approve", str(request["id"]))
        return self.publish() if publish else None

    def sync_all(self) -> None:
        for node in self.nodes.values():
            node.cli("sync")

    def register(self) -> None:
        """Approve every pending registration, publish, and let every node sync."""
        self.say("* operator approves the registration requests and publishes")
        self.approve_all()
        self.sync_all()

    def allow_client(self, node: NodeHandle, address: str = "127.0.0.1") -> None:
        """The node's information systems may call from ``address`` (its client subsystem)."""
        node.cli("client", "allow", node.client_subsystem, "--address", address)

    def add_service(
        self,
        provider: NodeHandle,
        service: str,
        kind: str,
        url: str,
        client: NodeHandle | None = None,
        path: str = "",
        *,
        subsystem: str = "",
        classify: bool = True,
        by: str = "demo",
    ) -> None:
        """``service`` of the provider's subsystem, granted to ``client``'s client subsystem.

        ``classify``: recorded as carrying no personal data (the sample residents are
        fictitious), so the policy engine decides NOT_PERSONAL_DATA and access rights
        alone grant it; personal-data services need an agreement.
        """
        sub = subsystem or provider.provider_subsystem
        provider.cli("service", "add", sub, service, "--url", url, "--type", kind)
        if client is not None:
            provider.cli("acl", "grant", f"{sub}/{service}", client.client_id)
        if classify:
            provider.cli("service", "classify", f"{sub}/{service}", "--non-personal", "--by", by)
        self.services.append(
            {
                "id": f"{provider.member}/{sub}/{service}",
                "type": kind,
                "client": client.client_id if client else "",
                "via": client.name if client else "",
                "path": path,
            }
        )

    def write_manifest(self) -> Path:
        """``demo.json``: where every node, service and port is."""
        manifest = {
            "nodes": {
                n.name: {
                    "member": n.member,
                    "dir": str(n.dir),
                    "client_url": n.client_url,
                    "admin_url": n.admin_url,
                    "console_url": n.console_url,
                    "disclosure_url": n.disclosure_url,
                    "tls_cert": str(n.tls_cert),
                    "client": n.client_id,
                }
                for n in self.nodes.values()
            },
            "services": self.services,
            "central_url": self.central_url,
            "ports": self.ports,
            "passphrase_file": str(self.base / "passphrase"),
        }
        path = self.base / "demo.json"
        path.write_text(json.dumps(manifest, indent=2) + "\n")
        return path
