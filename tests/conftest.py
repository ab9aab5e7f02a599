"""Shared fixtures: real CAs, keys and certificates made on disk; real subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from certs import keys
from certs.ca import CertificateAuthority, cert_pem
from secnode.demo.ports import free_port  # noqa: F401 - the tests import it from here

# The federation fixtures (federation, federation_factory) for every test module.
pytest_plugins = ["tests.nodefixtures"]

PASSPHRASE = b"test-passphrase"
PG_URL_ENV = "SECNODE_TEST_PG_URL"

# Every `secnode serve` a test starts is one process (the node PID the test kills or
# measures) unless the test asks for `--workers` itself (tests/test_workers.py).
os.environ.setdefault("SECNODE_WORKERS", "1")

# Parallel test workers (pytest-xdist) choose ports at the same time: each takes its own
# residue class of the port range (secnode/demo/ports.py), so two never pick one port.
_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _xdist_worker.startswith("gw") and _xdist_worker[2:].isdigit():
    os.environ.setdefault(
        "SECNODE_PORT_SLICE",
        f"{int(_xdist_worker[2:])}/{os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1')}",
    )


@pytest.fixture(autouse=True)
def _passphrase_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECNODE_PASSPHRASE", PASSPHRASE.decode())


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["SECNODE_PASSPHRASE"] = PASSPHRASE.decode()
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_cli(
    tool: str,
    *args: str,
    check: bool = True,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``certs``/``central``/``secnode`` as a real subprocess (``python -m``)."""
    proc = subprocess.run(
        [sys.executable, "-m", tool, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env or cli_env(),
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{tool} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def wait_for_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"server exited early ({proc.returncode}):\n{out}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@pytest.fixture
def spawn() -> Iterator[object]:
    """Start long-running CLI servers; all are terminated at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(tool: str, *args: str, port: int | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", tool, *args],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        if port is not None:
            wait_for_port(port, proc=proc)
        return proc

    yield start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class Issued:
    key_path: Path
    cert_path: Path
    cert: x509.Certificate
    key: keys.PrivateKey


@dataclass
class TestCA:
    __test__ = False  # a fixture helper, not a test class

    ca: CertificateAuthority
    dir: Path

    @property
    def cert_path(self) -> Path:
        return self.dir / "ca.pem"

    def issue(
        self,
        profile: str,
        subject: str,
        name: str | None = None,
        days: int = 365,
        key_type: str = "ec",
    ) -> Issued:
        key = keys.generate_key(key_type)
        csr = keys.build_csr(key, keys.parse_subject(subject))
        cert = self.ca.issue(csr, profile, PASSPHRASE, days=days)
        stem = name or f"{profile}-{cert.serial_number:x}"
        out = self.dir.parent / "issued-by-test"
        out.mkdir(exist_ok=True)
        key_path, cert_path = out / f"{stem}.key", out / f"{stem}.pem"
        keys.write_key(key_path, key, PASSPHRASE)
        cert_path.write_bytes(cert_pem(cert))
        return Issued(key_path, cert_path, cert, key)


def make_ca(base: Path, name: str = "Test CA", ocsp_url: str | None = None) -> TestCA:
    directory = base / name.lower().replace(" ", "-")
    ca = CertificateAuthority.init(directory, name, PASSPHRASE, ocsp_url=ocsp_url)
    return TestCA(ca, directory)


@pytest.fixture
def test_ca(tmp_path: Path) -> TestCA:
    return make_ca(tmp_path)


@pytest.fixture
def pg_url() -> str:
    url = os.environ.get(PG_URL_ENV)
    if not url:
        pytest.skip(f"{PG_URL_ENV} not set (PostgreSQL tests need a server URL)")
    return url


def http_get(url: str, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()
