"""Issue 6 acceptance: the message log of a real two-node federation, verified and tampered.

One federation per module (CA+OCSP, TSA, central, Aizu and Takamatsu serving,
1 s time-stamping interval, small batches). After a run of exchanges the
nodes are stopped cleanly and everything else works offline on copies of
their directories, the way an auditor (or an insider with database access)
would: ``secnode log verify`` must pass on the live database and on archives,
and name the record for each tampering.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from secnode.core.messagelog import LogRecord
from secnode.messagelog import tables
from secnode.messagelog.convert import record_of, row_of
from secnode.store import db
from tests.support.cli import CliResult, invoke
from tests.support.logfed import (
    LogFederation,
    Reply,
    anchors_pem,
    auditor_cli,
    build_log_federation,
    clone,
    log_cli,
    records_by_message,
    sqlite_db,
    verify_json,
    wait_stamped,
)

pytestmark = pytest.mark.slow

BATCH_SIZE = 6


@dataclass
class Run:
    lf: LogFederation
    replies: list[Reply]
    health: dict[str, Any]
    health_status: int
    metrics: str
    base: Path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    base = tmp_path_factory.mktemp("mlog")
    lf = build_log_federation(
        base / "fed",
        settings={"timestamping_interval": 1},
        node_config={"messagelog": {"archive_interval": 0, "timestamp_batch_size": BATCH_SIZE}},
    )
    try:
        lf.start_nodes()
        replies = lf.calls(24)
        wait_stamped(lf.takamatsu.dir)
        replies += lf.calls(16)  # a second round: more batches, later times for --until
        wait_stamped(lf.aizu.dir)
        wait_stamped(lf.takamatsu.dir)
        status, health = lf.aizu.health()
        metrics = lf.aizu.metrics()
        lf.stop_nodes()
        yield Run(lf, replies, health, status, metrics, base)
    finally:
        lf.close()


def first_bad(node_dir: Path, *args: str | Path) -> dict[str, Any]:
    code, report = verify_json_dir(node_dir, *args)
    assert code == 1, report
    assert report["ok"] is False
    return dict(report["first_bad_record"])


def verify_json_dir(node_dir: Path, *args: str | Path) -> tuple[int, dict[str, Any]]:
    out = invoke("secnode", "log", "verify", "--json", "--dir", node_dir, *args, check=False)
    return out.exit_code, json.loads(out.stdout)


def chain_records(node_dir: Path) -> list[LogRecord]:
    engine = db.make_engine(f"sqlite:///{node_dir / 'messagelog.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(tables.records.select().order_by(tables.records.c.seq)).all()
        return [record_of(r) for r in rows]
    finally:
        engine.dispose()


# ----- the untouched log ------------------------------------------------------------------------
def test_every_exchange_succeeded_and_is_logged_on_both_nodes(run: Run) -> None:
    assert [r.status for r in run.replies] == [200] * len(run.replies)
    for node, directions in (
        (run.lf.takamatsu, {"request_out", "response_in"}),
        (run.lf.aizu, {"request_in", "response_out"}),
    ):
        logged = records_by_message(node.dir)
        for reply in run.replies:
            assert logged.get(reply.message_id) == directions, reply.message_id


def test_verify_passes_on_both_live_databases(run: Run) -> None:
    for node in (run.lf.aizu, run.lf.takamatsu):
        code, report = verify_json(node)
        assert code == 0, report["failures"]
        assert report["checked"]["records"] == 2 * len(run.replies)
        assert report["checked"]["signatures"] == 2 * len(run.replies)
        assert report["checked"]["proofs"] == 2 * len(run.replies)
        assert report["checked"]["batches"] >= 2 * len(run.replies) // BATCH_SIZE
        assert len(report["chains"]) == 1
    out = log_cli(run.lf.aizu, "verify")
    assert out.exit_code == 0 and "OK: 80 records" in out.stdout


def test_health_and_metrics_report_the_log(run: Run) -> None:
    assert run.health_status == 200, run.health
    section = run.health["messagelog"]
    assert section["records_written"] == 2 * len(run.replies)
    assert section["stamping"]["backlog"] == 0
    assert section["stamping"]["refusing"] is False
    assert section["stamping"]["last_success"] is not None
    assert "secnode_messagelog_stamp_backlog 0.0" in run.metrics
    assert "secnode_messagelog_records_total" in run.metrics


def test_search_show_and_export(run: Run) -> None:
    node, reply = run.lf.takamatsu, run.replies[5]
    found = json.loads(log_cli(node, "search", "--message-id", reply.message_id, "--json").stdout)
    assert [r["direction"] for r in found] == ["request_out", "response_in"]
    assert {r["client_id"] for r in found} == {f"{node.member}/portal"}
    assert found[0]["user_id"] == "JP-auditor-test"
    by_client = json.loads(
        log_cli(
            node,
            "search",
            "--client",
            node.member,
            "--service",
            f"{run.lf.aizu.member}/residents",
            "--direction",
            "request_out",
            "--json",
        ).stdout
    )
    assert len(by_client) == len(run.replies)
    shown = json.loads(log_cli(node, "show", found[1]["id"], "--body", "--json").stdout)
    assert shown["batch"]["first_seq"] <= shown["seq"] <= shown["batch"]["last_seq"]
    assert shown["proof"]["seq"] == shown["seq"]
    assert shown["body"] is not None and shown["stored_in"] == "database"
    bundle = run.base / "evidence.zip"
    out = log_cli(node, "export", reply.message_id, "--out", bundle, "--json", check=True)
    assert json.loads(out.stdout)["unstamped"] == []
    anchors = anchors_pem(run.lf, run.base / "auditor-anchors.pem")
    # the bundle on its own, with only the auditor's anchors
    alone = auditor_cli("verify", bundle, "--anchor", anchors, "--json")
    report = json.loads(alone.stdout)
    assert alone.exit_code == 0, report["failures"]
    assert report["checked"]["records"] == 2 and report["checked"]["signatures"] == 2
    missing = log_cli(node, "show", "0" * 32)
    assert missing.exit_code == 1 and "no record" in missing.stderr


def test_openssl_accepts_a_token_from_the_log(run: Run, tmp_path: Path) -> None:
    with sqlite_db(run.lf.aizu.dir) as conn:
        token, root = conn.execute("SELECT token, root FROM mlog_batches LIMIT 1").fetchone()
    (tmp_path / "token.tst").write_bytes(token)
    result = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-digest",
            bytes(root).hex(),
            "-in",
            "token.tst",
            "-token_in",
            "-CAfile",
            str(run.lf.fed.ca_cert),
            "-untrusted",
            str(run.lf.tsa_dir / "tsa.pem"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "Verification: OK" in result.stdout, result.stderr
    wrong = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-digest",
            hashlib.sha256(b"x").hexdigest(),
            "-in",
            "token.tst",
            "-token_in",
            "-CAfile",
            str(run.lf.fed.ca_cert),
            "-untrusted",
            str(run.lf.tsa_dir / "tsa.pem"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert wrong.returncode != 0


# ----- tampering with the live database ---------------------------------------------------------
def _tampered(run: Run, name: str) -> Path:
    return clone(run.lf.aizu.dir, run.base / f"tamper-{name}")


def test_body_byte_changed(run: Run) -> None:
    node_dir = _tampered(run, "body")
    with sqlite_db(node_dir) as conn:
        rid, body = conn.execute(
            "SELECT record_id, body FROM mlog_records WHERE seq = 7"
        ).fetchone()
        changed = bytes([body[0] ^ 0x01]) + body[1:]
        conn.execute("UPDATE mlog_records SET body = ? WHERE record_id = ?", (changed, rid))
    bad = first_bad(node_dir)
    assert (bad["kind"], bad["seq"], bad["record_id"]) == ("altered", 7, rid)
    assert "body" in bad["message"]


def test_record_deleted(run: Run) -> None:
    node_dir = _tampered(run, "deleted")
    with sqlite_db(node_dir) as conn:
        before, after = (
            conn.execute("SELECT record_id FROM mlog_records WHERE seq = ?", (s,)).fetchone()[0]
            for s in (10, 12)
        )
        conn.execute("DELETE FROM mlog_records WHERE seq = 11")
    bad = first_bad(node_dir)
    assert (bad["kind"], bad["seq"]) == ("missing", 11)
    assert before in bad["message"] and after in bad["message"]  # the neighbours are named


def test_two_records_swapped(run: Run) -> None:
    node_dir = _tampered(run, "swapped")
    records = chain_records(node_dir)
    a, b = records[14], records[15]  # seqs 15 and 16
    engine = db.make_engine(f"sqlite:///{node_dir / 'messagelog.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(tables.records.delete().where(tables.records.c.seq.in_([15, 16])))
            conn.execute(
                tables.records.insert(), [{**row_of(b), "seq": 15}, {**row_of(a), "seq": 16}]
            )
    finally:
        engine.dispose()
    bad = first_bad(node_dir)
    assert (bad["kind"], bad["seq"], bad["record_id"]) == ("reordered", 15, b.id)


def test_forged_record_inserted_with_recomputed_chain(run: Run) -> None:
    """The strongest insider: a forged record at seq 20, every later record renumbered and
    re-hashed, so every hash and link checks out; only the time-stamps tell."""
    node_dir = _tampered(run, "inserted")
    records = chain_records(node_dir)
    at = 19  # index of seq 20
    forged = LogRecord.create(
        chain_id=records[at].chain_id,
        seq=20,
        prev_hash=records[at - 1].record_hash,
        time=records[at].time,
        direction="request_in",
        node_id=records[at].node_id,
        headers_sha256=bytes(32),
        body=b'{"forged":true}',
        client_id=records[at].client_id,
        service_id=records[at].service_id,
        message_id="forged-message",
    )
    rewritten = [*records[:at], forged]
    for old in records[at:]:
        rewritten.append(
            LogRecord.create(
                chain_id=old.chain_id,
                seq=rewritten[-1].seq + 1,
                prev_hash=rewritten[-1].record_hash,
                time=old.time,
                direction=old.direction,
                node_id=old.node_id,
                headers_sha256=old.headers_sha256,
                body=old.body,
                client_id=old.client_id,
                service_id=old.service_id,
                message_id=old.message_id,
                user_id=old.user_id,
                purpose=old.purpose,
                legal_basis=old.legal_basis,
                data_subject=old.data_subject,
                decision=old.decision,
                reason=old.reason,
                signed_digest=old.signed_digest,
                signature=old.signature,
                signer_cert_sha256=old.signer_cert_sha256,
                ocsp_sha256=old.ocsp_sha256,
                witness=old.witness,
                record_id=old.id,
            )
        )
    engine = db.make_engine(f"sqlite:///{node_dir / 'messagelog.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(tables.records.delete().where(tables.records.c.seq >= 20))
            conn.execute(tables.records.insert(), [row_of(r) for r in rewritten[at:]])
    finally:
        engine.dispose()
    assert all(r.hash_ok() for r in rewritten)  # the forgery is internally consistent
    bad = first_bad(node_dir)
    assert (bad["kind"], bad["seq"], bad["record_id"]) == ("inserted", 20, forged.id)


def test_token_replaced_with_one_for_another_root(run: Run) -> None:
    node_dir = _tampered(run, "token")
    with sqlite_db(node_dir) as conn:
        (first_token,), (victim, first_seq) = (
            conn.execute("SELECT token FROM mlog_batches ORDER BY first_seq LIMIT 1").fetchone(),
            conn.execute(
                "SELECT batch_id, first_seq FROM mlog_batches ORDER BY first_seq LIMIT 1 OFFSET 2"
            ).fetchone(),
        )
        conn.execute("UPDATE mlog_batches SET token = ? WHERE batch_id = ?", (first_token, victim))
        rid = conn.execute(
            "SELECT record_id FROM mlog_records WHERE seq = ?", (first_seq,)
        ).fetchone()[0]
    bad = first_bad(node_dir)
    assert (bad["kind"], bad["seq"], bad["batch_id"]) == ("bad_token", first_seq, victim)
    assert bad["record_id"] == rid
    out = log_cli_dir(node_dir, "verify")
    assert out.exit_code == 1 and f"record {rid}" in out.stderr and "bad_token" in out.stderr


def log_cli_dir(node_dir: Path, *args: str) -> CliResult:
    return invoke("secnode", "log", *args, "--dir", node_dir, check=False)


# ----- archives ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def archived(run: Run) -> Path:
    """A copy of Aizu archived in three runs (--until), then purged (retention 0)."""
    node_dir = clone(run.lf.aizu.dir, run.base / "archived")
    times = [r.time for r in chain_records(node_dir)]
    for cut in (times[len(times) // 3], times[2 * len(times) // 3]):
        out = log_cli_dir(node_dir, "archive", "--until", cut.isoformat(), "--json")
        assert out.exit_code == 0, out.output
    text = (
        (node_dir / "secnode.toml").read_text().replace("retention_days = 30", "retention_days = 0")
    )
    (node_dir / "secnode.toml").write_text(text)
    out = log_cli_dir(node_dir, "archive", "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["purged_records"] == len(times)
    return node_dir


def test_archives_chain_and_verify_with_and_without_the_database(run: Run, archived: Path) -> None:
    files = sorted((archived / "archive").glob("mlog-*.zip"))
    assert len(files) == 3
    with sqlite_db(archived) as conn:
        assert conn.execute("SELECT COUNT(*) FROM mlog_records").fetchone()[0] == 0
        rows = conn.execute(
            "SELECT sequence, sha256, previous_sha256, first_seq, last_seq "
            "FROM mlog_archives ORDER BY sequence"
        ).fetchall()
    assert [r[0] for r in rows] == [1, 2, 3]
    assert rows[0][2] is None and rows[1][2] == rows[0][1] and rows[2][2] == rows[1][1]
    assert rows[0][3] == 1 and rows[1][3] == rows[0][4] + 1 and rows[2][4] == 80
    code, report = verify_json_dir(archived)
    assert code == 0, report["failures"]
    assert report["checked"]["archives"] == 3 and report["checked"]["records"] == 80
    anchors = anchors_pem(run.lf, run.base / "anchors-archives.pem")
    alone = auditor_cli("verify", *files, "--anchor", anchors)
    assert alone.exit_code == 0, alone.output
    # an auditor holding only the configuration anchor and a copy of the global configuration
    via_conf = auditor_cli(
        "verify", *files, "--anchor", run.lf.fed.anchor, "--globalconf", archived / "globalconf"
    )
    assert via_conf.exit_code == 0, via_conf.output
    # an anchor that trusts neither the CA nor the TSA
    stranger = auditor_cli("verify", *files, "--anchor", run.lf.fed.anchor)
    assert stranger.exit_code == 1 and "no CA certificate" in stranger.stderr


def test_archive_removed_from_the_middle(run: Run, archived: Path) -> None:
    node_dir = clone(archived, run.base / "archive-gap")
    files = sorted((node_dir / "archive").glob("mlog-*.zip"))
    with sqlite_db(node_dir) as conn:
        middle, third_first = conn.execute(
            "SELECT a.file_name, b.first_seq FROM mlog_archives a, mlog_archives b "
            "WHERE a.sequence = 2 AND b.sequence = 3"
        ).fetchone()
    (node_dir / "archive" / middle).unlink()
    assert len(files) == 3
    bad = first_bad(node_dir)
    assert bad["kind"] == "archive_chain" and bad["seq"] == third_first
    assert "missing" in bad["message"]


def test_archived_records_are_still_searchable_and_exportable(run: Run, archived: Path) -> None:
    reply = run.replies[0]
    found = json.loads(
        log_cli_dir(
            archived, "search", "--message-id", reply.message_id, "--archives", "--json"
        ).stdout
    )
    assert [r["direction"] for r in found] == ["request_in", "response_out"]
    shown = json.loads(log_cli_dir(archived, "show", found[0]["id"], "--json").stdout)
    assert shown["stored_in"] == "archive"
    bundle = run.base / "evidence-archived.zip"
    out = log_cli_dir(archived, "export", reply.message_id, "--out", str(bundle), "--json")
    assert out.exit_code == 0, out.output
    anchors = anchors_pem(run.lf, run.base / "anchors-bundle.pem")
    alone = auditor_cli("verify", bundle, "--anchor", anchors, "--json")
    assert alone.exit_code == 0, alone.output
