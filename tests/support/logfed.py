"""The message-log tests' federation: two cities with a TSA.

Built from the :class:`~secnode.demo.federation.Federation` steps
(:mod:`tests.support.federation`: in-process operator commands, real server
processes) plus what the log needs: an RFC 3161 TSA approved in the global
configuration (``certs tsa serve``, a process the fault tests stop and start),
the sample REST service, and a service of Aizu that Takamatsu's portal may call.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from secnode.demo.federation import Federation
from secnode.demo.node import NodeHandle
from secnode.demo.two_cities import CITIES
from tests.support.cli import CliResult, invoke
from tests.support.common import free_port, wait_until
from tests.support.federation import create

AIZU, TAKAMATSU = "aizu", "takamatsu"


@dataclass
class Reply:
    status: int
    message_id: str
    body: bytes
    headers: dict[str, str]

    @property
    def error(self) -> str:
        return self.headers.get("X-Road-Error", "")


@dataclass
class LogFederation:
    """A :class:`Federation` with a TSA and an echo service from Aizu to Takamatsu."""

    fed: Federation

    @property
    def aizu(self) -> NodeHandle:
        return self.fed.nodes[AIZU]

    @property
    def takamatsu(self) -> NodeHandle:
        return self.fed.nodes[TAKAMATSU]

    @property
    def tsa_dir(self) -> Path:
        return self.fed.tsa_dir

    @property
    def tsa_port(self) -> int:
        return self.fed.tsa_port

    @property
    def service_port(self) -> int:
        return self.fed.ports["service"]

    # ----- processes ----------------------------------------------------------------------
    def start_tsa(self) -> None:
        self.fed.start_tsa()

    def stop_tsa(self) -> None:
        self.fed.stop_tsa()

    def start_nodes(self) -> None:
        for name in (AIZU, TAKAMATSU):
            self.fed.start_node(name)

    def stop_nodes(self) -> None:
        for name in (AIZU, TAKAMATSU):
            self.fed.stop_node(name)

    def close(self) -> None:
        self.fed.close()

    # ----- traffic ------------------------------------------------------------------------
    def call(
        self,
        body: bytes = b'{"hello":"aizu"}',
        message_id: str | None = None,
        timeout: float = 15,
        client_url: str | None = None,
    ) -> Reply:
        """One REST exchange Takamatsu portal -> Aizu residents/echo."""
        mid = message_id or str(uuid.uuid4())
        base = client_url or self.takamatsu.client_url
        url = f"{base}/r1/{self.aizu.member}/residents/echo"
        req = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Road-Client": f"{self.takamatsu.member}/portal",
                "X-Road-Id": mid,
                "X-Road-UserId": "JP-auditor-test",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return Reply(resp.status, mid, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            with exc:  # its response holds the connection
                return Reply(exc.code, mid, exc.read(), dict(exc.headers))

    def calls(self, count: int, workers: int = 8) -> list[Reply]:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda i: self.call(f'{{"n":{i}}}'.encode()), range(count)))


def log_cli(node: NodeHandle, *args: str | Path, check: bool = False) -> CliResult:
    """``secnode log ARGS --dir NODE`` in-process (non-zero exits are returned, not raised)."""
    return invoke("secnode", "log", *args, "--dir", node.dir, check=check)


def verify_json(node: NodeHandle, *args: str | Path) -> tuple[int, dict[str, Any]]:
    out = invoke("secnode", "log", "verify", "--json", "--dir", node.dir, *args, check=False)
    return out.exit_code, json.loads(out.stdout)


@contextmanager
def sqlite_db(node_dir: Path) -> Iterator[sqlite3.Connection]:
    """The node's message-log database (SQLite), as an insider with file access would open it."""
    conn = sqlite3.connect(node_dir / "messagelog.db")
    try:
        yield conn
        conn.commit()
    finally:
        conn.close()


def build_log_federation(
    base: Path,
    settings: dict[str, int] | None = None,
    node_config: dict[str, dict[str, Any]] | None = None,
    db_urls: dict[str, str] | None = None,
    dead_tsa_first: bool = False,
) -> LogFederation:
    """CA+OCSP, TSA, central, Aizu and Takamatsu registered and synced; nodes not started.

    ``dead_tsa_first``: the configuration also approves a TSA that never answers, listed
    before the real one (approved TSAs are listed by name), so every stamp fails over.
    """
    fed = create(base, settings)
    lf = LogFederation(fed)
    try:
        fed.tsa("Test TSA")
        if dead_tsa_first:
            fed.certs("tsa", "init", base / "tsa-down", "--ca", fed.ca_dir, "--name", "Down TSA")
            down = f"http://127.0.0.1:{free_port()}"
            fed.add_tsa("a-down-tsa", down, base / "tsa-down" / "tsa.pem")
        fed.add_tsa("test-tsa", fed.tsa_url, lf.tsa_dir / "tsa.pem")
        fed.publish()
        fed.backend("service")
        for name, member, member_name in CITIES[:2]:
            fed.add_node(
                name,
                member,
                member_name,
                subsystems=("portal", "residents"),
                config=node_config,
                db_url=(db_urls or {}).get(name, ""),
            )
        fed.register()
        echo = f"http://127.0.0.1:{lf.service_port}/echo"
        fed.add_service(
            lf.aizu, "echo", "rest", echo, lf.takamatsu, subsystem="residents", classify=False
        )
        fed.allow_client(lf.takamatsu)
    except BaseException:
        fed.close()
        raise
    return lf


def unstamped(node_dir: Path) -> int:
    """Records of the node's chains not yet covered by a batch (read from the database)."""
    with sqlite_db(node_dir) as conn:
        rows = conn.execute(
            "SELECT c.stamped_seq, (SELECT MAX(seq) FROM mlog_records r"
            " WHERE r.chain_id = c.chain_id) FROM mlog_chains c"
        ).fetchall()
    return sum(max(0, (last or 0) - stamped) for stamped, last in rows)


def wait_stamped(node_dir: Path, timeout: float = 20) -> None:
    wait_until(lambda: unstamped(node_dir) == 0, timeout, f"every record of {node_dir} stamped")


def records_by_message(node_dir: Path) -> dict[str, set[str]]:
    """message id -> directions logged for it."""
    out: dict[str, set[str]] = {}
    with sqlite_db(node_dir) as conn:
        for mid, direction in conn.execute("SELECT message_id, direction FROM mlog_records"):
            out.setdefault(mid, set()).add(direction)
    return out


def clone(node_dir: Path, dest: Path) -> Path:
    """A copy of a stopped node's directory to tamper with (the original stays intact)."""
    shutil.copytree(node_dir, dest)
    return dest


def anchors_pem(lf: LogFederation, dest: Path) -> Path:
    """What an auditor gets from the registry operator: approved CA and TSA certificates."""
    dest.write_bytes(lf.fed.ca_cert.read_bytes() + (lf.tsa_dir / "tsa.pem").read_bytes())
    return dest


def auditor_cli(*args: str | Path) -> CliResult:
    """``secnode log ARGS`` with no node directory: the auditor's own machine."""
    return invoke("secnode", "log", *args, check=False)
