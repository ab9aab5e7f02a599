"""A bare node directory for the policy tests (no tests here): ``secnode init`` against a
test CA, and ``secnode`` commands on it in-process (the same click code as the shell's)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from secnode.cli import main
from tests.support.pki import make_ca

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "policy" / "city-a.json"
REQUESTS = ROOT / "examples" / "policy" / "requests"
AT = "2026-06-01T10:00:00+09:00"


@dataclass
class NodeCli:
    """A node directory and a way to run ``secnode`` commands on it."""

    dir: Path

    def __call__(self, *args: str | Path, ok: bool = True) -> Result:
        argv = [str(a) for a in args] + ["--dir", str(self.dir)]
        result = CliRunner().invoke(main, argv, env={"SECNODE_ACTOR": "officer-test"})
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        if ok:
            assert result.exit_code == 0, (argv, result.stdout, result.stderr)
        else:
            assert result.exit_code != 0, (argv, result.stdout)
        return result

    def json(self, *args: str | Path) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def explain(self, request: Path | dict[str, Any], tmp: Path) -> dict[str, Any]:
        if isinstance(request, dict):
            path = tmp / "request.json"
            path.write_text(json.dumps(request, ensure_ascii=False))
            request = path
        return dict(self.json("policy", "explain", request, "--at", AT))

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.dir / 'secnode.db'}"


def make_node(base: Path, member: str = "JP/GOV/CITY-A") -> NodeCli:
    ca = make_ca(base)
    target = base / "node"
    result = CliRunner().invoke(
        main,
        [
            "init",
            str(target),
            "--member",
            member,
            "--server-code",
            "ss1",
            "--central",
            "http://127.0.0.1:9",
            "--anchor",
            str(ca.cert_path),
        ],
    )
    assert result.exit_code == 0, result.output
    return NodeCli(target)


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False))
    return path
