"""``secnode log reconcile``: load two nodes' logs, verify each on its own, compare them.

A side is a node directory (its database and archives, trusted through its own
anchor and global configuration, as ``secnode log verify --dir`` does), a
directory of archive files, or one archive file (both with the auditor's anchor
for that side). Each side is verified first; its failures are part of the answer,
and the records are compared anyway, so a deleted or altered record is named by
the exchange it belonged to (:mod:`secnode.core.messagelog.reconcile`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from secnode.config import CONFIG_FILE, NodeDir
from secnode.core.messagelog.reconcile import LogSide, ReconcileReport, reconcile, side_of
from secnode.messagelog.audit import AuditResult, archive_files, audit_files, audit_node
from secnode.messagelog.evidence import EvidenceError


@dataclass(frozen=True)
class SideSource:
    """Where one side's log comes from, and what the auditor trusts for it."""

    path: Path
    anchor: Path | None = None
    globalconf: Path | None = None
    partial: bool = False


@dataclass
class Reconciliation:
    """Both sides' verification and the comparison; ``ok`` only when all three are clean."""

    audits: list[tuple[str, AuditResult]]
    report: ReconcileReport

    @property
    def ok(self) -> bool:
        return self.report.ok and all(a.report.ok for _, a in self.audits)

    def to_json(self) -> dict[str, Any]:
        out = self.report.to_json()
        out["ok"] = self.ok
        for side, (_, audit) in zip(out["sides"], self.audits, strict=True):
            side["verify"] = {
                "ok": audit.report.ok,
                "summary": audit.report.summary(),
                "first_bad_record": audit.first_bad(),
                "trust": audit.trust.describe(),
                "sources": audit.sources,
                "unstamped": audit.report.unstamped,
            }
        return out


def load_side(name: str, source: SideSource) -> tuple[AuditResult, LogSide]:
    """Verify one side with its own trust and turn its records into a :class:`LogSide`."""
    path = source.path
    members: set[str] = set()
    if path.is_dir() and (path / CONFIG_FILE).exists():
        nd = NodeDir.open(path)
        members.add(nd.config.node.member)
        audit = audit_node(path, source.anchor)
    else:
        files = archive_files(path) if path.is_dir() else [path]
        if not files:
            raise EvidenceError(f"{path}: neither a node directory nor archive files")
        if source.anchor is None:
            raise EvidenceError(
                f"{path}: archives without their node directory need that side's anchor "
                "(a PEM file with its approved CA and TSA certificates)"
            )
        audit = audit_files(files, source.anchor, source.globalconf, complete=not source.partial)
    return audit, side_of(name, audit.records.values(), members)


def reconcile_logs(first: SideSource, second: SideSource) -> Reconciliation:
    """Both sides verified, then compared; sides are named by their paths."""
    names = [str(first.path), str(second.path)]
    if names[0] == names[1]:
        raise EvidenceError("reconcile needs two different logs")
    loaded = [load_side(name, source) for name, source in zip(names, (first, second), strict=True)]
    report = reconcile(loaded[0][1], loaded[1][1])
    return Reconciliation([(n, audit) for n, (audit, _) in zip(names, loaded, strict=True)], report)
