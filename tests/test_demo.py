"""``secnode demo --once``: the README's first command, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env

pytestmark = pytest.mark.slow


def test_demo_once_exits_zero_and_writes_manifest(tmp_path: Path) -> None:
    base = tmp_path / "demo"
    env = cli_env()
    env.pop("SECNODE_PASSPHRASE", None)  # the demo makes its own passphrase file
    proc = subprocess.run(
        [sys.executable, "-m", "secnode", "demo", "--dir", str(base), "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all sample calls succeeded" in proc.stdout
    assert proc.stdout.count("[OK  ]") == 5 and "[FAIL]" not in proc.stdout
    manifest = json.loads((base / "demo.json").read_text())
    assert set(manifest["nodes"]) == {"aizu", "takamatsu"}
    for node in manifest["nodes"].values():
        assert Path(node["dir"], "secnode.toml").exists()
        assert node["client_url"].startswith("http://127.0.0.1:")
        # the web console and the resident page, printed and in the manifest (issue 16)
        assert node["console_url"].startswith("https://127.0.0.1:")
        assert node["console_url"].endswith("/console/")
        assert node["disclosure_url"].startswith("https://127.0.0.1:")
        assert node["console_url"] in proc.stdout and node["disclosure_url"] in proc.stdout
        # ... and no account shipped with it: the operator makes one
        users = subprocess.run(
            [sys.executable, "-m", "secnode", "admin", "user", "list", "--json"],
            capture_output=True,
            text=True,
            env=env,
            cwd=node["dir"],
            check=True,
        )
        assert json.loads(users.stdout) == []
    kinds = {s["type"] for s in manifest["services"]}
    assert kinds == {"rest", "soap"}
    for sub in ("ca", "tsa", "central", "aizu", "takamatsu"):
        assert (base / sub).is_dir()
    assert (base / "passphrase").stat().st_mode & 0o077 == 0
