"""The auditor's side: gather evidence and trust, run the pure verifier, name the bad record.

Used by ``secnode log verify`` (and the tests). A node directory contributes
its live database (read only, never migrated), every archive in its archive
directory, and, unless the auditor brings their own anchor, the trust that
its configuration anchor and held global configurations give
(:mod:`secnode.messagelog.anchors`). Archive files can also be verified on
their own with an anchor file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from secnode.config import NodeDir
from secnode.core.messagelog import (
    ArchiveFormatError,
    LoadedArchive,
    LogEvidence,
    LogRecord,
    VerificationReport,
    VerifyOptions,
    read_archive,
    verify_log,
)
from secnode.core.messagelog.report import DEFAULT_UNSTAMPED_GRACE, Failure
from secnode.messagelog.anchors import AuditorTrust, grace_period, load_trust
from secnode.messagelog.bodyfiles import BODIES_DIR, BodyStore
from secnode.messagelog.database import has_log_database, open_log_engine
from secnode.messagelog.store import LogStore


@dataclass
class AuditResult:
    report: VerificationReport
    trust: AuditorTrust
    sources: list[str] = field(default_factory=list)
    records: dict[tuple[str, int], LogRecord] = field(default_factory=dict)

    def record_at(self, failure: Failure) -> LogRecord | None:
        if failure.chain_id is None or failure.seq is None:
            return None
        return self.records.get((failure.chain_id, failure.seq))

    def first_bad(self) -> dict[str, Any] | None:
        """The first failure as ``{kind, chain_id, seq, record_id, message}``.

        Failures about a batch or a gap carry a seq but no record id; the id of
        the record stored at that seq (if any) is filled in from the evidence.
        """
        first = self.report.first_failure
        if first is None:
            return None
        record_id = first.record_id
        if record_id is None:
            found = self.record_at(first)
            record_id = found.id if found is not None else None
        return {
            "kind": first.kind.value,
            "chain_id": first.chain_id,
            "seq": first.seq,
            "record_id": record_id,
            "batch_id": first.batch_id,
            "archive": first.archive,
            "message": first.message,
        }

    def to_json(self) -> dict[str, Any]:
        out = self.report.to_json()
        out["first_bad_record"] = self.first_bad()
        out["trust"] = self.trust.describe()
        out["sources"] = self.sources
        out["notes"] = [*out["notes"], *self.trust.notes]
        return out


def archive_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.zip") if p.is_file())


def _load(paths: Sequence[Path]) -> tuple[list[LoadedArchive], list[tuple[str, str]]]:
    loaded, unreadable = [], []
    for path in paths:
        try:
            loaded.append(read_archive(path))
        except ArchiveFormatError as exc:
            unreadable.append((str(path), str(exc)))
    return loaded, unreadable


def _options(trust: AuditorTrust, complete: bool, as_of: dt.datetime | None) -> VerifyOptions:
    freshness = trust.setting("ocsp_freshness_seconds")
    return VerifyOptions(
        as_of=as_of,
        unstamped_grace=grace_period(trust, DEFAULT_UNSTAMPED_GRACE),
        complete=complete,
        ocsp_max_age=float(freshness) if freshness else 3600.0,
    )


def audit_node(
    node_dir: Path,
    anchor: Path | None = None,
    extra: Sequence[Path] = (),
    as_of: dt.datetime | None = None,
) -> AuditResult:
    """Verify a node directory: live database + its archive directory (+ ``extra`` files)."""
    nd = NodeDir.open(node_dir)
    trust = load_trust(anchor or nd.anchor_path, nd.globalconf_dir)
    live: LogEvidence | None = None
    if has_log_database(nd):
        engine = open_log_engine(nd, create=False)
        try:
            bodies = BodyStore(nd.path / BODIES_DIR)
            live = LogStore(engine, str(nd.config.node_id), bodies).live_evidence()
        finally:
            engine.dispose()
    paths = [*archive_files(nd.path / nd.config.messagelog.archive_dir), *extra]
    archives, unreadable = _load(paths)
    sources = [f"message log database of {nd.path}"] if live is not None else []
    return _run(trust, archives, unreadable, live, True, as_of, sources + [str(p) for p in paths])


def audit_files(
    paths: Sequence[Path],
    anchor: Path,
    globalconf_dir: Path | None = None,
    complete: bool = True,
    as_of: dt.datetime | None = None,
) -> AuditResult:
    """Verify archive files / evidence bundles on their own."""
    trust = load_trust(anchor, globalconf_dir)
    archives, unreadable = _load(paths)
    return _run(trust, archives, unreadable, None, complete, as_of, [str(p) for p in paths])


def _run(
    trust: AuditorTrust,
    archives: list[LoadedArchive],
    unreadable: list[tuple[str, str]],
    live: LogEvidence | None,
    complete: bool,
    as_of: dt.datetime | None,
    sources: list[str],
) -> AuditResult:
    report = verify_log(
        trust.anchors,
        archives=archives,
        live=live,
        options=_options(trust, complete, as_of),
        unreadable=unreadable,
    )
    records: dict[tuple[str, int], LogRecord] = {}
    for evidence in [*(a.evidence for a in archives), *([live] if live else [])]:
        for record in evidence.records:
            records.setdefault((record.chain_id, record.seq), record)
    return AuditResult(report, trust, sources, records)
