"""``secnode log``: the auditor's and operator's commands for the message log.

``verify`` works offline on a node directory or on archive files and exits 1
naming the first bad record; ``search``, ``show`` and ``export`` read the
node's database (and, for records already purged, its archives); ``archive``
writes signed archives and applies the retention. The work is
:mod:`secnode.messagelog.evidence`'s; see ``docs/audit.md``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import click

from certs.cliutil import UserError, echo_json, echo_table, get_passphrase, passphrase_option
from secnode.cli.options import json_option, node_command
from secnode.home import NodeHome
from secnode.messagelog import evidence
from secnode.messagelog.audit import AuditResult
from secnode.messagelog.reconcile import Reconciliation, SideSource, reconcile_logs
from secnode.messagelog.store import SearchFilter


def parse_when(text: str | None, what: str) -> dt.datetime | None:
    """ISO date or date-time; without a zone it is UTC (a date alone is 00:00 UTC)."""
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UserError(f"{what}: {text!r} is not an ISO date or date-time") from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@click.group("log")
def log_group() -> None:
    """Message log: verify (offline), reconcile two nodes, search, show, export, archive."""


# ----- verify -----------------------------------------------------------------------------------
def _print_report(result: AuditResult) -> None:
    report = result.report
    click.echo(f"trust: {result.trust.describe()}")
    checked = ", ".join(f"{v} {k}" for k, v in sorted(report.checked.items()))
    click.echo(f"checked: {checked or 'nothing'}")
    for chain_id, info in sorted(report.chains.items()):
        if "first_seq" in info:
            click.echo(
                f"chain {chain_id}: seqs {info['first_seq']}..{info['last_seq']} "
                f"({info['records']} records)"
            )
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
    if first is None:  # a failed report names at least one failure
        raise RuntimeError("verification failed without a failure to name")
    where = (
        f"{first['chain_id']}#{first['seq']}"
        if first["chain_id"] is not None
        else first["archive"] or "?"
    )
    rid = first["record_id"] or "unknown: the record is not in the evidence"
    click.echo(
        f"FAILED: first bad record {where} (record {rid}): {first['kind']}: {first['message']}",
        err=True,
    )


@log_group.command("verify")
@click.argument("archives", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--dir",
    "node_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Node directory: its database, archives, anchor and global "
    "configuration (default: $SECNODE_DIR or cwd, when no ARCHIVE is given).",
)
@click.option(
    "--anchor",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="PEM trust anchors: the configuration anchor and/or approved CA and "
    "TSA certificates (default with --dir: its globalconf/anchor.pem).",
)
@click.option(
    "--globalconf",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Global configurations to take the approved CAs and TSAs from (with ARCHIVE...): "
    "what 'central conf export --out-dir DIR' wrote, several such exports in subdirectories, "
    "or a node's globalconf/ directory.",
)
@click.option(
    "--partial",
    is_flag=True,
    help="The archives given are not the whole log (do not require archive 1).",
)
@json_option
def verify_cmd(
    archives: tuple[str, ...],
    node_dir: str | None,
    anchor: str | None,
    globalconf: str | None,
    partial: bool,
    as_json: bool,
) -> None:
    """Check every record hash, the chain, Merkle proofs, tokens, signatures, archives.

    Works offline. Exits 1 naming the first bad record (its id and what is
    wrong: altered, missing, reordered, inserted, unstamped, bad_token,
    bad_signature, archive_chain, manifest).
    """
    result = evidence.audit(
        node_dir,
        [Path(a) for a in archives],
        Path(anchor) if anchor else None,
        Path(globalconf) if globalconf else None,
        partial,
    )
    if as_json:
        echo_json(result.to_json())
    else:
        _print_report(result)
    if not result.report.ok:
        raise SystemExit(1)


# ----- reconcile --------------------------------------------------------------------------------
def _print_reconciliation(result: Reconciliation) -> None:
    for name, audit in result.audits:
        click.echo(f"{name}: {audit.report.summary()}")
    report = result.report
    click.echo(
        f"compared {report.exchanges} exchange(s) between the two nodes, "
        f"{report.witnesses} witnessed position(s)"
    )
    for finding in report.findings[:200]:
        click.echo(f"  {finding.describe()}", err=True)
    if len(report.findings) > 200:
        click.echo(f"  ... and {len(report.findings) - 200} more", err=True)
    if result.ok:
        click.echo("OK: the two logs agree")
    else:
        failed = [name for name, audit in result.audits if not audit.report.ok]
        click.echo(
            f"FAILED: {len(report.findings)} finding(s)"
            + (f"; verification failed for {', '.join(failed)}" if failed else ""),
            err=True,
        )


@log_group.command("reconcile")
@click.argument("first", type=click.Path(exists=True, path_type=Path))
@click.argument("second", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--first-anchor",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Trust anchors (PEM) for FIRST (default for a node directory: its own "
    "globalconf/anchor.pem; required for archives).",
)
@click.option(
    "--second-anchor",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Trust anchors (PEM) for SECOND (as --first-anchor).",
)
@click.option(
    "--first-globalconf",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="A copy of FIRST's globalconf/ directory (with archives).",
)
@click.option(
    "--second-globalconf",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="A copy of SECOND's globalconf/ directory (with archives).",
)
@click.option("--partial", is_flag=True, help="Archives given are not the whole log.")
@json_option
def reconcile_cmd(
    first: Path,
    second: Path,
    first_anchor: Path | None,
    second_anchor: Path | None,
    first_globalconf: Path | None,
    second_globalconf: Path | None,
    partial: bool,
    as_json: bool,
) -> None:
    """Compare two nodes' logs: exchanges on one side only, digest mismatches, witnessed
    records the other side no longer has.

    FIRST and SECOND are node directories, directories of archive files, or archive
    files. Each is verified with its own trust first (as 'log verify' does). Exits 1
    on any finding or failed verification.
    """
    result = reconcile_logs(
        SideSource(first, first_anchor, first_globalconf, partial),
        SideSource(second, second_anchor, second_globalconf, partial),
    )
    if as_json:
        echo_json(result.to_json())
    else:
        _print_reconciliation(result)
    if not result.ok:
        raise SystemExit(1)


# ----- search and show --------------------------------------------------------------------------
@log_group.command("search")
@click.option("--since", default=None, help="From this time (ISO; UTC if no zone).")
@click.option("--until", default=None, help="Up to this time (ISO; UTC if no zone).")
@click.option("--client", default=None, help="Client member or subsystem id.")
@click.option("--service", default=None, help="Service id, or its member/subsystem.")
@click.option("--message-id", default=None)
@click.option("--user-id", default=None)
@click.option("--data-subject", default=None)
@click.option(
    "--direction",
    default=None,
    type=click.Choice(["request_in", "request_out", "response_in", "response_out", "refusal"]),
)
@click.option(
    "--archives",
    "in_archives",
    is_flag=True,
    help="Also search the archive files (records purged from the database).",
)
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1))
@json_option
@node_command
def search_cmd(
    node: NodeHome,
    since: str | None,
    until: str | None,
    client: str | None,
    service: str | None,
    message_id: str | None,
    user_id: str | None,
    data_subject: str | None,
    direction: str | None,
    in_archives: bool,
    limit: int,
    as_json: bool,
) -> None:
    """Find records by time range, client, service, message id, user id, data subject."""
    criteria = SearchFilter(
        parse_when(since, "--since"),
        parse_when(until, "--until"),
        client,
        service,
        message_id,
        user_id,
        data_subject,
        direction,
    )
    with evidence.opened(node) as log:
        found = evidence.search(log, criteria, limit, in_archives)
    if as_json:
        echo_json([evidence.record_json(r) for r in found])
        return
    echo_table(
        [
            {
                "id": r.id,
                "time": r.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "direction": r.direction.value,
                "client": r.client_id,
                "service": r.service_id,
                "message_id": r.message_id,
                "decision": r.decision,
            }
            for r in found
        ],
        ["id", "time", "direction", "client", "service", "message_id", "decision"],
    )


@log_group.command("show")
@click.argument("record_id")
@click.option(
    "--body",
    is_flag=True,
    help="Include the body when it was kept: as text, or its size and SHA-256 if binary "
    "(--json: base64).",
)
@json_option
@node_command
def show_cmd(node: NodeHome, record_id: str, body: bool, as_json: bool) -> None:
    """One record (by id) with its signature, time-stamp batch and Merkle proof."""
    with evidence.opened(node) as log:
        out = evidence.show(log, record_id, with_body=body)
    if as_json:
        echo_json(out)
        return
    for key in sorted(k for k in out if k not in ("batch", "proof", "signature", "body")):
        click.echo(f"{key + ':':20} {readable(out[key])}")
    if out.get("signature"):
        sig = str(out["signature"])
        click.echo(
            f"{'signature:':20} {len(base64.b64decode(sig))} bytes CMS (base64 {sig[:24]}...)"
        )
    batch = out["batch"]
    if batch:
        click.echo(
            f"{'batch:':20} {batch['batch_id']} (seqs {batch['first_seq']}.."
            f"{batch['last_seq']}, TSA {batch['tsa_name']}, {batch['gen_time']})"
        )
        click.echo(f"{'merkle root:':20} {batch['root']}")
        path = out["proof"] or {}
        click.echo(f"{'proof:':20} leaf {path.get('index')}, {len(path.get('path', []))} hashes")
    else:
        click.echo(f"{'batch:':20} not time-stamped yet")
    if body and out.get("body"):
        for line in body_lines(base64.b64decode(out["body"])):
            click.echo(line)


def readable(value: Any) -> str:
    """A record field as an operator reads it: ``-`` for none, yes/no, JSON for structures
    (never a Python repr such as ``None`` or ``{'a': 1}``)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def body_lines(raw: bytes) -> list[str]:
    """The body as text when it is printable UTF-8 (indented under a size line), else one
    line with its size and SHA-256: binary never reaches the terminal."""
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(ch.isprintable() or ch in "\n\r\t" for ch in text):
        lines = text.splitlines() or [""]
        return [f"{'body:':20} {len(raw)} bytes, sha256 {digest}"] + [f"  {x}" for x in lines]
    return [f"{'body:':20} {len(raw)} bytes, not text, sha256 {digest}"]


# ----- export and archive -----------------------------------------------------------------------
@log_group.command("export")
@click.argument("message_id")
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Evidence bundle to write (a zip that 'secnode log verify' checks).",
)
@click.option("--client", default=None, help="Only the exchange of this client.")
@passphrase_option
@json_option
@node_command
def export_cmd(
    node: NodeHome,
    message_id: str,
    out_path: str,
    client: str | None,
    passphrase_file: str | None,
    as_json: bool,
) -> None:
    """Write the records of one exchange (by message id) as a signed evidence bundle."""
    with evidence.opened(node) as log:
        written = evidence.export(
            log, message_id, client, lambda: get_passphrase(passphrase_file), out_path
        )
    if as_json:
        echo_json(written)
        return
    click.echo(f"wrote {out_path}: {len(written['records'])} record(s) of message {message_id}")
    if written["unstamped"]:
        click.echo(
            f"warning: {len(written['unstamped'])} record(s) not time-stamped yet; export "
            "again after the next time-stamping round for a complete bundle",
            err=True,
        )


@log_group.command("archive")
@click.option("--until", default=None, help="Only records up to this time (ISO; UTC if no zone).")
@passphrase_option
@json_option
@node_command
def archive_cmd(
    node: NodeHome, until: str | None, passphrase_file: str | None, as_json: bool
) -> None:
    """Write stamped, unarchived records to signed archives; apply the retention."""
    up_to = parse_when(until, "--until")
    passphrase = get_passphrase(passphrase_file)
    with evidence.opened(node) as log:
        work = evidence.archiver(log, passphrase)
        total = sum(p.count for p in work.plan(up_to))
        if as_json or total == 0:
            run = evidence.archive(log, work, up_to)
        else:
            with click.progressbar(length=total, label="archiving records", show_pos=True) as bar:
                run = evidence.archive(log, work, up_to, progress=bar.update)
        archive_dir = log.archive_dir
    rows = [
        {
            "sequence": a.sequence,
            "file": a.path.name,
            "chain": a.chain_id,
            "seqs": f"{a.first_seq}..{a.last_seq}",
            "records": a.records,
        }
        for a in run.written
    ]
    if as_json:
        echo_json({"archives": rows, "purged_records": run.purged})
        return
    echo_table(rows, ["sequence", "file", "chain", "seqs", "records"])
    click.echo(
        f"{len(run.written)} archive(s) written to {archive_dir}; "
        f"{run.purged} record(s) past the {run.retention_days}-day "
        "retention removed from the database"
    )
