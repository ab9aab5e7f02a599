"""Small helpers every kind of test uses: the key passphrase, the CLI environment,
real subprocesses of the CLIs, waiting for a port or a condition."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from secnode.demo.node import http_json, set_toml
from secnode.demo.ports import free_port

__all__ = [
    "PASSPHRASE",
    "PG_URL_ENV",
    "cli_env",
    "free_port",
    "http_get",
    "http_json",
    "run_cli",
    "set_toml",
    "wait_for_port",
    "wait_until",
]

PASSPHRASE = b"test-passphrase"
PG_URL_ENV = "SECNODE_TEST_PG_URL"
ROOT = Path(__file__).resolve().parent.parent.parent


def cli_env() -> dict[str, str]:
    """os.environ with the test passphrase and this checkout first on PYTHONPATH."""
    env = dict(os.environ)
    env["SECNODE_PASSPHRASE"] = PASSPHRASE.decode()
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
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


def http_get(url: str, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()
