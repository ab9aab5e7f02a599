"""The one handle on a security node that a federation built here has: its directory,
ports and identity, with shortcuts for its CLI and its admin endpoints.

The demo, the benchmark and the tests all get these from
:class:`secnode.demo.federation.Federation`; how a command runs (a subprocess for the
demo, in-process for the tests) is the federation's :data:`Runner`, kept on the handle.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class DemoError(Exception):
    """A step of building or running the federation failed; the message names it."""


@dataclass(frozen=True)
class CliResult:
    """What one operator command printed and how it exited."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


#: Runs ``tool ARGV`` (``certs``/``central``/``secnode``); ``check`` raises on a non-zero exit.
Runner = Callable[[str, Sequence[str], bool], CliResult]


def command_env(passphrase: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment an operator shell has: the key passphrase, no default directories."""
    env = dict(os.environ)
    env["SECNODE_PASSPHRASE"] = passphrase
    # Several nodes share one machine here: one process each (serve --workers defaults to
    # the number of cores); set SECNODE_WORKERS to try more.
    env.setdefault("SECNODE_WORKERS", "1")
    env.pop("SECNODE_DIR", None)
    env.pop("CENTRAL_DIR", None)
    env.update(extra or {})
    return env


def subprocess_runner(env: Callable[[], dict[str, str]]) -> Runner:
    """Each command as the shell would run it (``python -m TOOL``): the demo's way."""

    def run(tool: str, argv: Sequence[str], check: bool) -> CliResult:
        result = subprocess.run(
            [sys.executable, "-m", tool, *argv],
            env=env(),
            capture_output=True,
            text=True,
            check=False,
        )
        out = CliResult(result.returncode, result.stdout, result.stderr)
        if check and out.exit_code != 0:
            detail = (out.stderr or out.stdout).strip()
            raise DemoError(f"'{tool} {' '.join(argv)}' failed: {detail}")
        return out

    return run


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


def http_json(
    url: str, timeout: float = 5, context: ssl.SSLContext | None = None
) -> tuple[int, Any]:
    """GET ``url`` asking for JSON (listClients answers XML otherwise); (status, parsed JSON
    body) for 2xx and HTTP errors alike."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:  # its response holds the connection
            return exc.code, json.loads(exc.read())


def _no_runner(tool: str, argv: Sequence[str], check: bool) -> CliResult:
    raise DemoError(f"this node handle has no command runner ({tool} {' '.join(argv)})")


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
    #: The subsystem its sample services are provided by ("" when it provides none).
    provider_subsystem: str = ""
    #: The subsystem its information systems call from.
    client_subsystem: str = "portal"
    #: The resident disclosure page's port (0 until the console is enabled).
    disclosure_port: int = 0
    #: Whether the admin listener serves HTTPS (the web console; ``secnode admin tls-cert``).
    admin_tls: bool = False
    run: Runner = field(default=_no_runner, repr=False, compare=False)

    # ----- identity and addresses ---------------------------------------------------------
    @property
    def node_id(self) -> str:
        return f"{self.member}/{self.server_code}"

    @property
    def client_id(self) -> str:
        return f"{self.member}/{self.client_subsystem}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_port}"

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def admin_url(self) -> str:
        """HTTPS once the console is enabled (the admin listener serves it), else HTTP."""
        scheme = "https" if self.admin_tls else "http"
        return f"{scheme}://127.0.0.1:{self.admin_port}"

    @property
    def console_url(self) -> str:
        return f"{self.admin_url}/console/"

    @property
    def disclosure_url(self) -> str:
        return f"https://127.0.0.1:{self.disclosure_port}/"

    # ----- files --------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.dir / "secnode.toml"

    @property
    def tls_cert(self) -> Path:
        """The node's self-signed HTTPS certificate (``secnode admin tls-cert``)."""
        return self.dir / "console-tls.pem"

    def cert_path(self, usage: str) -> Path:
        """The certificate the CA issued from ``keys/<usage>.csr`` (kept beside the CSR)."""
        return self.dir / "keys" / f"{usage}.pem"

    def admin_context(self) -> ssl.SSLContext | None:
        """Trust exactly this node's HTTPS certificate (for /health and /metrics); None
        while the admin listener is plain HTTP."""
        if not self.admin_tls:
            return None
        return ssl.create_default_context(cafile=str(self.tls_cert))

    # ----- commands and endpoints ---------------------------------------------------------
    def cli(self, *args: str | Path, check: bool = True) -> CliResult:
        """``secnode ARGS --dir <this node>`` through the federation's runner."""
        return self.run("secnode", [*(str(a) for a in args), "--dir", str(self.dir)], check)

    def status(self) -> dict[str, Any]:
        return dict(self.cli("status", "--json").json())

    def set_config(self, section: str, key: str, value: Any) -> None:
        set_toml(self.config_path, section, key, value)

    def health(self, timeout: float = 5) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of the running node's ``/health``."""
        return http_json(f"{self.admin_url}/health", timeout, self.admin_context())

    def metrics(self, timeout: float = 5) -> str:
        url = f"{self.admin_url}/metrics"
        with urllib.request.urlopen(url, timeout=timeout, context=self.admin_context()) as resp:
            return str(resp.read().decode())
