"""``secnode log``: the auditor's and operator's commands for the message log.

``verify`` works offline on a node directory or on archive files and exits 1
naming the first bad record; ``search``, ``show`` and ``export`` read the
node's database (and, for records already purged, its archives); ``archive``
writes signed archives and applies the retention. See ``docs/audit.md``.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from sqlalchemy import Engine

from certs import keys
from certs.cliutil import UserError, echo_json, echo_table, get_passphrase, passphrase_option
from secnode.config import DIR_ENV, ConfigError, NodeDir
from secnode.core.globalconf import GlobalConfError
from secnode.core.messagelog import (
    ArchiveFormatError,
    ArchiveKind,
    LogEvidence,
    LogRecord,
    RecordProof,
    StampedBatch,
    archive_filename,
    read_archive,
    write_archive,
)
from secnode.globalconf import ConfStore
from secnode.home import NodeHome
from secnode.messagelog.anchors import AnchorError
from secnode.messagelog.archiver import Archiver
from secnode.messagelog.audit import AuditResult, archive_files, audit_files, audit_node
from secnode.messagelog.database import open_log_engine
from secnode.messagelog.store import LogStore, SearchFilter

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
LOG_ERRORS = (ConfigError, AnchorError, ArchiveFormatError, GlobalConfError, keys.KeyFileError)


def parse_when(text: str | None, what: str) -> dt.datetime | None:
    """ISO date or date-time; without a zone it is UTC (a date alone is 00:00 UTC)."""
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UserError(f"{what}: {text!r} is not an ISO date or date-time") from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _open(node_dir: str | None, migrate: bool = True) -> NodeHome:
    try:
        return NodeHome.open(node_dir, migrate=migrate)
    except LOG_ERRORS as exc:
        raise UserError(str(exc)) from exc


def _log_engine(node: NodeHome) -> Engine:
    """The log's engine, kept on the node object for the command's duration."""
    engine = getattr(node, "_log_engine", None)
    if engine is None:
        engine = open_log_engine(node.dir)
        node._log_engine = engine  # type: ignore[attr-defined]
    return engine


def _store(node: NodeHome) -> LogStore:
    return LogStore(_log_engine(node), str(node.node_id))


def log_command(func: Callable[..., Any]) -> Callable[..., Any]:
    """Dispose of the log's engine when a command that opened it ends."""

    @functools.wraps(func)
    def wrapper(node: NodeHome, **kwargs: Any) -> Any:
        try:
            return func(node, **kwargs)
        finally:
            engine = getattr(node, "_log_engine", None)
            if engine is not None:
                engine.dispose()

    return wrapper


def _archive_dir(node: NodeHome) -> Path:
    return node.path / node.dir.config.messagelog.archive_dir


def _record_json(record: LogRecord, with_body: bool = False) -> dict[str, Any]:
    out = record.to_json()
    body = out.pop("body")
    out["body_kept"] = body is not None
    if with_body:
        out["body"] = body
    return out


def _archived_records(node: NodeHome) -> list[LogRecord]:
    """Records in the node's archive files (for records already purged from the database)."""
    found: list[LogRecord] = []
    for path in archive_files(_archive_dir(node)):
        try:
            found.extend(read_archive(path).evidence.records)
        except ArchiveFormatError:
            continue
    return found


# ----- verify ---------------------------------------------------------------------------------
def _print_report(result: AuditResult) -> None:
    report = result.report
    click.echo(f"trust: {result.trust.describe()}")
    checked = ", ".join(f"{v} {k}" for k, v in sorted(report.checked.items()))
    click.echo(f"checked: {checked or 'nothing'}")
    for chain_id, info in sorted(report.chains.items()):
        if "first_seq" in info:
            click.echo(f"chain {chain_id}: seqs {info['first_seq']}..{info['last_seq']} "
                       f"({info['records']} records)")
    for note in [*report.notes, *result.trust.notes]:
        click.echo(f"note: {note}")
    if report.ok:
        click.echo(report.summary())
        return
    for failure in report.failures[:50]:
        click.echo(f"  {failure.describe()}", err=True)
    if len(report.failures) > 50:
        click.echo(f"  ... and {len(report.failures) - 50} more", err=True)
    first = result.first_bad()
    assert first is not None
    where = (f"{first['chain_id']}#{first['seq']}" if first["chain_id"] is not None
             else first["archive"] or "?")
    rid = first["record_id"] or "unknown: the record is not in the evidence"
    click.echo(f"FAILED: first bad record {where} (record {rid}): {first['kind']}: "
               f"{first['message']}", err=True)


def verify_cmd_impl(node_dir: str | None, archives: tuple[str, ...], anchor: str | None,
                    globalconf: str | None, partial: bool, as_json: bool) -> None:
    paths = [Path(a) for a in archives]
    try:
        if paths and node_dir is None:
            if anchor is None:
                raise UserError("archives given without a node directory need --anchor "
                                "(a PEM file with the approved CA and TSA certificates, or the "
                                "configuration anchor together with --globalconf)")
            result = audit_files(paths, Path(anchor), Path(globalconf) if globalconf else None,
                                 complete=not partial)
        elif paths:
            nd = NodeDir.open(node_dir)
            result = audit_files(paths, Path(anchor) if anchor else nd.anchor_path,
                                 nd.globalconf_dir, complete=not partial)
        else:
            result = audit_node(Path(node_dir or os.environ.get(DIR_ENV) or "."),
                                Path(anchor) if anchor else None)
    except LOG_ERRORS as exc:
        raise UserError(str(exc)) from exc
    if as_json:
        echo_json(result.to_json())
    else:
        _print_report(result)
    if not result.report.ok:
        raise SystemExit(1)


# ----- export ---------------------------------------------------------------------------------
def _bundle(node: NodeHome, records: list[LogRecord], passphrase: bytes,
            description: str) -> bytes:
    store = _store(node)
    conf = ConfStore(node.dir.globalconf_dir).load_last_good()
    extra = list(conf.ca_certs) if conf else []
    evidence = store.evidence(records, extra)
    _add_archived_evidence(node, evidence)
    row = node.active_certificate("sign")
    if row is None:
        raise UserError("no active sign certificate to sign the bundle with")
    cert = x509.load_pem_x509_certificate(row.cert_pem.encode())
    return write_archive(evidence, node_id=str(node.node_id), signer_cert=cert,
                         signer=node.signer("sign", passphrase), extra_certs=extra,
                         kind=ArchiveKind.BUNDLE, description=description)


def _add_archived_evidence(node: NodeHome, evidence: LogEvidence) -> None:
    """Batches/proofs/OCSP for records already purged from the database come from archives."""
    wanted = {(r.chain_id, r.seq) for r in evidence.records}
    have = {(b.chain_id, p.seq) for b in evidence.batches for p in evidence.proofs
            if p.batch_id == b.batch_id}
    missing = wanted - have
    if not missing:
        return
    batches: dict[str, StampedBatch] = {b.batch_id: b for b in evidence.batches}
    proofs: list[RecordProof] = list(evidence.proofs)
    ocsp = {bytes(o) for o in evidence.ocsp_responses}
    for path in archive_files(_archive_dir(node)):
        try:
            loaded = read_archive(path).evidence
        except ArchiveFormatError:
            continue
        for batch in loaded.batches:
            if any(batch.covers(c, s) for c, s in missing):
                batches.setdefault(batch.batch_id, batch)
                proofs += [p for p in loaded.proofs if p.batch_id == batch.batch_id
                           and (batch.chain_id, p.seq) in missing]
        ocsp.update(loaded.ocsp_responses)
    needed = {r.ocsp_sha256 for r in evidence.records if r.ocsp_sha256}
    evidence.batches = list(batches.values())
    evidence.proofs = proofs
    evidence.ocsp_responses = [o for o in ocsp if hashlib.sha256(o).digest() in needed]


# ----- archive --------------------------------------------------------------------------------
def archive_impl(node: NodeHome, until: dt.datetime | None, passphrase: bytes,
                 as_json: bool) -> None:
    row = node.active_certificate("sign")
    if row is None:
        raise UserError("no active sign certificate to sign archives with")
    cert = x509.load_pem_x509_certificate(row.cert_pem.encode())
    conf = ConfStore(node.dir.globalconf_dir).load_last_good()
    archiver = Archiver(_log_engine(node), str(node.node_id), _archive_dir(node), cert,
                        node.signer("sign", passphrase), list(conf.ca_certs) if conf else [])
    total = sum(p.count for p in archiver.plan(until))
    if as_json or total == 0:
        written = archiver.run(until)
    else:
        with click.progressbar(length=total, label="archiving records",
                               show_pos=True) as bar:
            written = archiver.run(until, progress=bar.update)
    purged = archiver.purge(node.dir.config.messagelog.retention_days)
    rows = [{"sequence": a.sequence, "file": a.path.name, "chain": a.chain_id,
             "seqs": f"{a.first_seq}..{a.last_seq}", "records": a.records} for a in written]
    if as_json:
        echo_json({"archives": rows, "purged_records": purged})
        return
    echo_table(rows, ["sequence", "file", "chain", "seqs", "records"])
    click.echo(f"{len(written)} archive(s) written to {_archive_dir(node)}; "
               f"{purged} record(s) past the {node.dir.config.messagelog.retention_days}-day "
               "retention removed from the database")


def register(main: click.Group) -> None:
    """Attach ``secnode log`` to the ``secnode`` group."""
    from secnode.cli import node_command

    @main.group("log")
    def log_group() -> None:
        """Message log: verify (offline), search, show, export evidence, archive."""

    @log_group.command("verify")
    @click.argument("archives", nargs=-1, type=click.Path(exists=True, dir_okay=False))
    @click.option("--dir", "node_dir", default=None, type=click.Path(file_okay=False),
                  help="Node directory: its database, archives, anchor and global "
                       "configuration (default: $SECNODE_DIR or cwd, when no ARCHIVE is given).")
    @click.option("--anchor", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="PEM trust anchors: the configuration anchor and/or approved CA and "
                       "TSA certificates (default with --dir: its globalconf/anchor.pem).")
    @click.option("--globalconf", type=click.Path(exists=True, file_okay=False), default=None,
                  help="A copy of a node's globalconf/ directory (with ARCHIVE...).")
    @click.option("--partial", is_flag=True,
                  help="The archives given are not the whole log (do not require archive 1).")
    @json_option
    def verify_cmd(archives: tuple[str, ...], node_dir: str | None, anchor: str | None,
                   globalconf: str | None, partial: bool, as_json: bool) -> None:
        """Check every record hash, the chain, Merkle proofs, tokens, signatures, archives.

        Works offline. Exits 1 naming the first bad record (its id and what is
        wrong: altered, missing, reordered, inserted, unstamped, bad_token,
        bad_signature, archive_chain, manifest).
        """
        verify_cmd_impl(node_dir, archives, anchor, globalconf, partial, as_json)

    @log_group.command("search")
    @click.option("--since", default=None, help="From this time (ISO; UTC if no zone).")
    @click.option("--until", default=None, help="Up to this time (ISO; UTC if no zone).")
    @click.option("--client", default=None, help="Client member or subsystem id.")
    @click.option("--service", default=None, help="Service id, or its member/subsystem.")
    @click.option("--message-id", default=None)
    @click.option("--user-id", default=None)
    @click.option("--data-subject", default=None)
    @click.option("--direction", default=None, type=click.Choice(
        ["request_in", "request_out", "response_in", "response_out", "refusal"]))
    @click.option("--archives", "in_archives", is_flag=True,
                  help="Also search the archive files (records purged from the database).")
    @click.option("--limit", default=1000, show_default=True, type=click.IntRange(1))
    @json_option
    @node_command
    @log_command
    def search_cmd(node: NodeHome, since: str | None, until: str | None, client: str | None,
                   service: str | None, message_id: str | None, user_id: str | None,
                   data_subject: str | None, direction: str | None, in_archives: bool,
                   limit: int, as_json: bool) -> None:
        """Find records by time range, client, service, message id, user id, data subject."""
        criteria = SearchFilter(parse_when(since, "--since"), parse_when(until, "--until"),
                                client, service, message_id, user_id, data_subject, direction)
        found = _store(node).search(criteria, limit)
        if in_archives:
            ids = {r.id for r in found}
            found += [r for r in _archived_records(node) if criteria.matches(r)
                      and r.id not in ids]
            found = sorted(found, key=lambda r: (r.time, r.chain_id, r.seq))[:limit]
        if as_json:
            echo_json([_record_json(r) for r in found])
            return
        echo_table([{"id": r.id, "time": r.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                     "direction": r.direction.value, "client": r.client_id,
                     "service": r.service_id, "message_id": r.message_id,
                     "decision": r.decision} for r in found],
                   ["id", "time", "direction", "client", "service", "message_id", "decision"])

    @log_group.command("show")
    @click.argument("record_id")
    @click.option("--body", is_flag=True, help="Include the body (base64) when it was kept.")
    @json_option
    @node_command
    @log_command
    def show_cmd(node: NodeHome, record_id: str, body: bool, as_json: bool) -> None:
        """One record (by id) with its signature, time-stamp batch and Merkle proof."""
        store = _store(node)
        record = store.record(record_id)
        where = "database"
        if record is None:
            record = next((r for r in _archived_records(node) if r.id == record_id), None)
            where = "archive"
        if record is None:
            raise UserError(f"no record {record_id} in the database or the archives")
        out = _record_json(record, with_body=body)
        out["stored_in"] = where
        stored = store.batch_for(record.chain_id, record.seq)
        if stored is not None:
            proof = next((p for p in stored.proofs() if p.seq == record.seq), None)
            out["batch"] = {**stored.batch.to_json(), "gen_time": stored.gen_time}
            out["proof"] = None if proof is None else proof.to_json()
        else:
            out["batch"] = out["proof"] = None
        if as_json:
            echo_json(out)
            return
        for key in sorted(k for k in out if k not in ("batch", "proof", "signature", "body")):
            click.echo(f"{key + ':':20} {out[key]}")
        if out.get("signature"):
            sig = str(out["signature"])
            click.echo(f"{'signature:':20} {len(base64.b64decode(sig))} bytes CMS (base64 "
                       f"{sig[:24]}...)")
        batch = out["batch"]
        if batch:
            click.echo(f"{'batch:':20} {batch['batch_id']} (seqs {batch['first_seq']}.."
                       f"{batch['last_seq']}, TSA {batch['tsa_name']}, {batch['gen_time']})")
            click.echo(f"{'merkle root:':20} {batch['root']}")
            path = out["proof"] or {}
            click.echo(f"{'proof:':20} leaf {path.get('index')}, "
                       f"{len(path.get('path', []))} hashes")
        else:
            click.echo(f"{'batch:':20} not time-stamped yet")
        if body and out.get("body"):
            click.echo(f"{'body (base64):':20} {out['body']}")

    @log_group.command("export")
    @click.argument("message_id")
    @click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
                  help="Evidence bundle to write (a zip that 'secnode log verify' checks).")
    @click.option("--client", default=None, help="Only the exchange of this client.")
    @passphrase_option
    @json_option
    @node_command
    @log_command
    def export_cmd(node: NodeHome, message_id: str, out_path: str, client: str | None,
                   passphrase_file: str | None, as_json: bool) -> None:
        """Write the records of one exchange (by message id) as a signed evidence bundle."""
        criteria = SearchFilter(message_id=message_id, client=client)
        records = _store(node).search(criteria, 10_000)
        ids = {r.id for r in records}
        records += [r for r in _archived_records(node)
                    if criteria.matches(r) and r.id not in ids]
        if not records:
            raise UserError(f"no record with message id {message_id!r}"
                            + (f" from {client}" if client else ""))
        records.sort(key=lambda r: (r.chain_id, r.seq))
        blob = _bundle(node, records, get_passphrase(passphrase_file),
                       f"exchange {message_id}" + (f" of {client}" if client else ""))
        Path(out_path).write_bytes(blob)
        loaded = read_archive(blob, out_path)
        unstamped = [r.id for r in records if not any(
            b.covers(r.chain_id, r.seq) for b in loaded.evidence.batches)]
        if as_json:
            echo_json({"out": out_path, "records": [r.id for r in records],
                       "unstamped": unstamped, "sha256": loaded.sha256.hex(),
                       "suggested_name": archive_filename(loaded.manifest, loaded.sha256)})
            return
        click.echo(f"wrote {out_path}: {len(records)} record(s) of message {message_id}")
        if unstamped:
            click.echo(f"warning: {len(unstamped)} record(s) not time-stamped yet; export again "
                       "after the next time-stamping round for a complete bundle", err=True)

    @log_group.command("archive")
    @click.option("--until", default=None,
                  help="Only records up to this time (ISO; UTC if no zone).")
    @passphrase_option
    @json_option
    @node_command
    @log_command
    def archive_cmd(node: NodeHome, until: str | None, passphrase_file: str | None,
                    as_json: bool) -> None:
        """Write stamped, unarchived records to signed archives; apply the retention."""
        archive_impl(node, parse_when(until, "--until"), get_passphrase(passphrase_file),
                     as_json)

