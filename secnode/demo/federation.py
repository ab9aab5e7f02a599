"""Build and run a complete federation on this machine with the normal CLIs.

Every step is the command an operator would type (``certs``, ``central``,
``secnode`` run as subprocesses), so the demo doubles as an executable version
of docs/operations.md and leaves directories those commands keep working on.
Used by ``secnode demo``, the benchmark and the end-to-end tests.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from secnode.demo.ports import free_port

INSTANCE = "JP"


class DemoError(Exception):
    """A step of building or running the federation failed; the message names it."""


@dataclass
class CityNode:
    name: str
    member: str
    member_name: str
    server_code: str
    dir: Path
    client_port: int
    server_port: int
    admin_port: int
    provider_subsystem: str
    client_subsystem: str = "portal"
    disclosure_port: int = field(default_factory=free_port)

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def admin_url(self) -> str:
        """HTTPS: the admin listener also serves the web console (its certificate below)."""
        return f"https://127.0.0.1:{self.admin_port}"

    @property
    def console_url(self) -> str:
        return f"{self.admin_url}/console/"

    @property
    def disclosure_url(self) -> str:
        return f"https://127.0.0.1:{self.disclosure_port}/"

    @property
    def tls_cert(self) -> Path:
        """The node's self-signed HTTPS certificate (``secnode admin tls-cert``)."""
        return self.dir / "console-tls.pem"

    def admin_context(self) -> ssl.SSLContext:
        """Trust exactly this node's HTTPS certificate (for /health and /metrics)."""
        return ssl.create_default_context(cafile=str(self.tls_cert))

    @property
    def client_id(self) -> str:
        return f"{self.member}/{self.client_subsystem}"


@dataclass
class Federation:
    """A CA with OCSP, a TSA, a central registry and city nodes under ``base``."""

    base: Path
    say: Callable[[str], None] = print
    passphrase: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, CityNode] = field(default_factory=dict)
    services: list[dict[str, Any]] = field(default_factory=list)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # ----- process plumbing ---------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SECNODE_PASSPHRASE"] = self.passphrase
        # Two nodes share one machine here: one process each (serve --workers defaults to cores).
        env.setdefault("SECNODE_WORKERS", "1")
        env.pop("SECNODE_DIR", None)
        env.pop("CENTRAL_DIR", None)
        return env

    def run(self, tool: str, *args: str | Path) -> str:
        """Run an operator command as the shell would; returns its standard output."""
        argv = [str(a) for a in args]
        result = subprocess.run(
            [sys.executable, "-m", tool, *argv],
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise DemoError(
                f"'{tool} {' '.join(argv)}' failed: {(result.stderr or result.stdout).strip()}"
            )
        return result.stdout

    def start(self, name: str, tool: str, *args: str | Path, port: int | None = None) -> None:
        log_path = self.base / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", tool, *(str(a) for a in args)]
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.env(),
                start_new_session=True,
            )
        self.processes[name] = proc
        if port is not None:
            self.wait_port(name, port)

    def wait_port(self, name: str, port: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        proc = self.processes.get(name)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                log = (self.base / "logs" / f"{name}.log").read_text(errors="replace")[-2000:]
                raise DemoError(f"{name} exited with {proc.returncode}:\n{log}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise DemoError(f"{name} is not listening on port {port} after {timeout:g} s")

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.processes.clear()

    # ----- building -----------------------------------------------------------------------
    def prepare_dir(self) -> None:
        if self.base.exists() and any(self.base.iterdir()):
            if not (self.base / "demo.json").exists() and not (self.base / "ca").exists():
                raise DemoError(
                    f"{self.base} is not empty and not a demo directory; choose another --dir"
                )
            shutil.rmtree(self.base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.passphrase = self.passphrase or secrets.token_urlsafe(24)
        pw = self.base / "passphrase"
        pw.write_text(self.passphrase + "\n")
        pw.chmod(0o600)
        for name in ("ocsp", "tsa", "central", "rest_service", "soap_service"):
            self.ports[name] = free_port()

    def build_trust_services(self) -> None:
        ca = self.base / "ca"
        self.say("* certificate authority with OCSP responder")
        self.run(
            "certs",
            "ca",
            "init",
            ca,
            "--name",
            "Demo Municipal CA",
            "--ocsp-url",
            f"http://127.0.0.1:{self.ports['ocsp']}",
        )
        self.start(
            "ocsp",
            "certs",
            "ocsp",
            "serve",
            ca,
            "--port",
            str(self.ports["ocsp"]),
            port=self.ports["ocsp"],
        )
        self.say("* time-stamping authority (RFC 3161)")
        self.run("certs", "tsa", "init", self.base / "tsa", "--ca", ca, "--name", "Demo TSA")
        self.start(
            "tsa",
            "certs",
            "tsa",
            "serve",
            self.base / "tsa",
            "--port",
            str(self.ports["tsa"]),
            port=self.ports["tsa"],
        )

    def build_central(self, cities: list[CityNode], settings: dict[str, int] | None = None) -> None:
        central = self.base / "central"
        self.say("* central registry")
        self.run("central", "init", central, "--instance", INSTANCE)
        self.run(
            "central",
            "ca",
            "add",
            self.base / "ca" / "ca.pem",
            "--name",
            "Demo CA",
            "--ocsp-url",
            f"http://127.0.0.1:{self.ports['ocsp']}",
            "--dir",
            central,
        )
        self.run(
            "central",
            "tsa",
            "add",
            "demo-tsa",
            "--url",
            f"http://127.0.0.1:{self.ports['tsa']}",
            "--cert",
            self.base / "tsa" / "tsa.pem",
            "--dir",
            central,
        )
        for name, value in (settings or {}).items():
            self.run("central", "settings", "set", name, str(value), "--dir", central)
        for city in cities:
            self.run(
                "central",
                "member",
                "add",
                city.member,
                "--name",
                city.member_name,
                "--dir",
                central,
            )
        self.run("central", "conf", "publish", "--dir", central)
        self.start(
            "central",
            "central",
            "serve",
            "--port",
            str(self.ports["central"]),
            "--dir",
            central,
            port=self.ports["central"],
        )

    def build_node(self, city: CityNode) -> None:
        d = city.dir
        self.say(f"* node {city.member}/{city.server_code} ({city.member_name})")
        self.run(
            "secnode",
            "init",
            d,
            "--member",
            city.member,
            "--server-code",
            city.server_code,
            "--central",
            f"http://127.0.0.1:{self.ports['central']}",
            "--anchor",
            self.base / "central" / "anchor.pem",
            "--client-port",
            str(city.client_port),
            "--server-port",
            str(city.server_port),
            "--admin-port",
            str(city.admin_port),
            "--address",
            f"127.0.0.1:{city.server_port}",
        )
        self.run("secnode", "sync", "--dir", d)
        self.enable_console(city)
        for usage in ("auth", "sign"):
            self.run(
                "secnode", "keys", "new", "--usage", usage, "--org", city.member_name, "--dir", d
            )
            cert = d / "keys" / f"{usage}.pem"
            self.run(
                "certs",
                "issue",
                self.base / "ca",
                "--csr",
                d / "keys" / f"{usage}.csr",
                "--profile",
                usage,
                "--out",
                cert,
            )
            self.run("secnode", "certs", "import", cert, "--dir", d)
        for sub in (city.client_subsystem, city.provider_subsystem):
            self.run("secnode", "subsystem", "add", sub, "--dir", d)
        self.run("secnode", "register", "--dir", d)

    def enable_console(self, city: CityNode) -> None:
        """HTTPS for the admin listener (with it the web console) and the disclosure page.

        No account is made: the operator adds one with ``secnode admin user add``.
        """
        self.run("secnode", "admin", "tls-cert", "--dir", city.dir)
        config = city.dir / "secnode.toml"
        text = config.read_text()
        at = text.index("[admin]")
        head, tail = text[:at], text[at:]
        tls = (
            'tls_cert = ""',
            'tls_cert = "console-tls.pem"',
            'tls_key = ""',
            'tls_key = "console-tls.key"',
        )
        for section in ("[admin]", "[disclosure]"):
            start = tail.index(section)
            part = tail[start:].replace(tls[0], tls[1], 1).replace(tls[2], tls[3], 1)
            if section == "[disclosure]":
                part = part.replace("port = 0", f"port = {city.disclosure_port}", 1)
            tail = tail[:start] + part
        config.write_text(head + tail)

    def approve_all(self) -> None:
        central = self.base / "central"
        requests = json.loads(self.run("central", "request", "list", "--json", "--dir", central))
        for req in requests:
            if req.get("state") == "pending":
                self.run("central", "request", "approve", str(req["id"]), "--dir", central)
        self.run("central", "conf", "publish", "--dir", central)

    def add_service(
        self,
        provider: CityNode,
        service: str,
        kind: str,
        url: str,
        client: CityNode,
        path: str = "",
    ) -> None:
        d = provider.dir
        self.run(
            "secnode",
            "service",
            "add",
            provider.provider_subsystem,
            service,
            "--url",
            url,
            "--type",
            kind,
            "--dir",
            d,
        )
        self.run(
            "secnode",
            "acl",
            "grant",
            f"{provider.provider_subsystem}/{service}",
            client.client_id,
            "--dir",
            d,
        )
        # Policy (issue 7): the sample services are classified as carrying no personal data
        # (their residents are fictitious), so the policy engine decides NOT_PERSONAL_DATA
        # and access rights alone grant them. Personal-data services need an agreement.
        self.run(
            "secnode",
            "service",
            "classify",
            f"{provider.provider_subsystem}/{service}",
            "--non-personal",
            "--by",
            "demo",
            "--dir",
            d,
        )
        self.services.append(
            {
                "id": f"{provider.member}/{provider.provider_subsystem}/{service}",
                "type": kind,
                "client": client.client_id,
                "via": client.name,
                "path": path,
            }
        )

    def start_node(self, city: CityNode) -> None:
        self.start(
            f"node-{city.name}", "secnode", "serve", "--dir", city.dir, port=city.client_port
        )
        self.wait_port(f"node-{city.name}", city.server_port)
        self.wait_healthy(city)

    def wait_healthy(self, city: CityNode, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    f"{city.admin_url}/health", timeout=5, context=city.admin_context()
                ) as resp:
                    return dict(json.loads(resp.read()))
            except urllib.error.HTTPError as exc:
                last = exc.read().decode(errors="replace")
            except OSError as exc:
                last = exc
            time.sleep(0.2)
        raise DemoError(f"node {city.name} is not healthy: {last}")

    def write_manifest(self) -> Path:
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
            "central_url": f"http://127.0.0.1:{self.ports['central']}",
            "ports": self.ports,
            "passphrase_file": str(self.base / "passphrase"),
        }
        path = self.base / "demo.json"
        path.write_text(json.dumps(manifest, indent=2) + "\n")
        return path


def two_cities(base: Path) -> list[CityNode]:
    return [
        CityNode(
            "aizu",
            f"{INSTANCE}/GOV/072028",
            "Aizu-Wakamatsu City",
            "ss1",
            base / "aizu",
            free_port(),
            free_port(),
            free_port(),
            provider_subsystem="residents",
        ),
        CityNode(
            "takamatsu",
            f"{INSTANCE}/GOV/372013",
            "Takamatsu City",
            "ss1",
            base / "takamatsu",
            free_port(),
            free_port(),
            free_port(),
            provider_subsystem="welfare",
        ),
    ]


def build_two_city_federation(
    base: Path, say: Callable[[str], None] = print, settings: dict[str, int] | None = None
) -> Federation:
    """Everything up to serving nodes: CA+OCSP, TSA, central, two registered nodes, services."""
    fed = Federation(base, say)
    fed.prepare_dir()
    try:
        cities = two_cities(base)
        fed.nodes = {c.name: c for c in cities}
        fed.build_trust_services()
        fed.build_central(cities, settings)
        svc = fed.ports
        fed.start(
            "rest_service",
            "secnode.demo.services",
            "--port",
            str(svc["rest_service"]),
            port=svc["rest_service"],
        )
        fed.start(
            "soap_service",
            "secnode.demo.services",
            "--port",
            str(svc["soap_service"]),
            port=svc["soap_service"],
        )
        for city in cities:
            fed.build_node(city)
        fed.say("* operator approves the registration requests and publishes")
        fed.approve_all()
        aizu, takamatsu = cities
        for city in cities:
            fed.run("secnode", "sync", "--dir", city.dir)
            fed.run(
                "secnode",
                "client",
                "allow",
                city.client_subsystem,
                "--address",
                "127.0.0.1",
                "--dir",
                city.dir,
            )
        fed.add_service(
            aizu,
            "residents",
            "rest",
            f"http://127.0.0.1:{svc['rest_service']}/residents",
            takamatsu,
            path="/1001",
        )
        fed.add_service(
            aizu, "echo", "rest", f"http://127.0.0.1:{svc['rest_service']}/echo", takamatsu
        )
        fed.add_service(
            takamatsu, "getResident", "soap", f"http://127.0.0.1:{svc['soap_service']}/soap", aizu
        )
        fed.say("* starting both nodes")
        for city in cities:
            fed.start_node(city)
        fed.write_manifest()
        return fed
    except BaseException:
        fed.stop()
        raise
