"""``secnode backup``/``restore`` refusals and the file itself, on a node that never served
(the serving-node round trip is ``tests/test_backup_restore.py``)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.conftest import make_ca
from tests.support.cli import invoke


@pytest.fixture
def node(tmp_path: Path) -> Path:
    ca = make_ca(tmp_path)
    target = tmp_path / "node"
    invoke(
        "secnode",
        "init",
        target,
        "--member",
        "JP/GOV/072028",
        "--server-code",
        "ss1",
        "--central",
        "http://127.0.0.1:9",
        "--anchor",
        ca.cert_path,
    )
    invoke("secnode", "keys", "new", "--usage", "sign", "--dir", target)
    return target


def test_a_backup_holds_the_snapshot_the_files_and_their_hashes(node: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.tar.gz"
    summary = invoke("secnode", "backup", "--out", out, "--json", "--dir", node).json()
    assert [d["role"] for d in summary["databases"]] == ["node"]  # no log database yet
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("manifest.json").read())
        key = tar.extractfile("node/keys/sign.key").read()
    assert {"db/node.sqlite", "node/secnode.toml", "node/globalconf/anchor.pem"} <= names
    assert "node/secnode.db" not in names  # the live file is never copied raw
    assert key.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert set(manifest["files"]) == {n for n in names if tar_is_file(out, n)} - {"manifest.json"}
    assert (out.stat().st_mode & 0o777) == 0o600
    again = invoke("secnode", "backup", "--out", out, "--dir", node, check=False)
    assert again.exit_code == 1 and "never overwrites" in again.stderr

    restored = tmp_path / "restored"
    report = invoke("secnode", "restore", out, "--dir", restored, "--json").json()
    assert report["log_empty"] is True and report["node"] == "JP/GOV/072028/ss1"
    assert (restored / "keys" / "sign.key").read_bytes() == key
    status = invoke("secnode", "db", "status", "--json", "--dir", restored).json()
    assert status[0]["current"] is True


def tar_is_file(path: Path, name: str) -> bool:
    with tarfile.open(path) as tar:
        return tar.getmember(name).isfile()


def test_restore_refuses_a_non_empty_target_and_damaged_or_foreign_files(
    node: Path, tmp_path: Path
) -> None:
    out = tmp_path / "b.tar.gz"
    invoke("secnode", "backup", "--out", out, "--dir", node)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    refused = invoke("secnode", "restore", out, "--dir", busy, check=False)
    assert refused.exit_code == 1 and "not empty" in refused.stderr

    # the same archive with one file changed: the manifest's hash no longer matches
    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(out) as src, tarfile.open(damaged, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            if member.name == "node/secnode.toml":
                data = data + b"\n# edited\n"
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    bad = invoke("secnode", "restore", damaged, "--dir", tmp_path / "r1", check=False)
    assert bad.exit_code == 1 and "node/secnode.toml" in bad.stderr and "damaged" in bad.stderr
    assert not (tmp_path / "r1").exists()
    assert not [p for p in tmp_path.iterdir() if ".restore-" in p.name]  # no staging left

    foreign = tmp_path / "foreign.tar.gz"
    foreign.write_bytes(gzip.compress(b"not a tar"))
    bad = invoke("secnode", "restore", foreign, "--dir", tmp_path / "r2", check=False)
    assert bad.exit_code == 1 and bad.stderr.startswith("error: cannot read backup")


def test_a_backup_inside_the_node_directory_is_refused(node: Path) -> None:
    refused = invoke("secnode", "backup", "--out", node / "b.tar.gz", "--dir", node, check=False)
    assert refused.exit_code == 1 and "inside the node directory" in refused.stderr
