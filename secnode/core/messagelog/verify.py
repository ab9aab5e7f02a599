"""The auditor's offline verifier: judge a message log from its files and trust anchors only.

Input is what an auditor can be handed: archives and evidence bundles
(:class:`~secnode.core.messagelog.archive.LoadedArchive`), and/or a dump of
the live database (:class:`~secnode.core.messagelog.archive.LogEvidence`),
plus the trust anchors (approved CA certificates, approved TSA
certificates). Nothing is fetched and the node is not trusted: every
signature, token and hash is recomputed here.

The report names the *first* failure in log order (archives in sequence, then
the live records; within them by chain, then seq) and lists all of them; the
failure kinds are described in :mod:`secnode.core.messagelog.report`. The
detection is layered so that one tampering yields one failure, not a cascade:
a deleted record is one ``missing`` and not also a broken link, and a chain
recomputed after a forged record is one ``inserted`` plus one summary of the
records after it.

This module drives the checks and walks each hash chain; the archive
containers (:mod:`~secnode.core.messagelog.archive_check`), the time stamps
(:mod:`~secnode.core.messagelog.stamp_check`) and the message signatures
(:mod:`~secnode.core.messagelog.signer_check`) are judged in modules of their own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from secnode.core.jsonfmt import cert_sha256
from secnode.core.messagelog.archive import (
    ArchiveFormatError,
    ArchiveKind,
    LoadedArchive,
    LogEvidence,
    read_archive,
)
from secnode.core.messagelog.archive_check import ArchiveCheck
from secnode.core.messagelog.findings import Entry, Findings, as_seq
from secnode.core.messagelog.record import LogRecord, genesis_hash
from secnode.core.messagelog.report import (
    FailureKind,
    TrustAnchors,
    VerificationReport,
    VerifyOptions,
)
from secnode.core.messagelog.signer_check import SignerCheck
from secnode.core.messagelog.stamp_check import Stamps, TokenCheck, tsa_token_check


# ----- entry points ----------------------------------------------------------------------
def verify_log(
    anchors: TrustAnchors,
    *,
    archives: Sequence[LoadedArchive] = (),
    live: LogEvidence | None = None,
    options: VerifyOptions = VerifyOptions(),
    token_check: TokenCheck | None = None,
    unreadable: Sequence[tuple[str, str]] = (),
) -> VerificationReport:
    """Verify archives (in any order) and/or live records; bundles are checked on their own.

    ``unreadable`` lists ``(label, reason)`` for containers that could not
    even be read; each becomes a ``manifest`` failure.
    """
    verifier = _Verifier(anchors, options, token_check or tsa_token_check(anchors))
    return verifier.run(list(archives), live, unreadable)


def verify_files(
    sources: Iterable[str | Path | bytes],
    anchors: TrustAnchors,
    *,
    live: LogEvidence | None = None,
    options: VerifyOptions = VerifyOptions(),
) -> VerificationReport:
    """Read and verify archive files; an unreadable file is reported, not raised."""
    loaded: list[LoadedArchive] = []
    unreadable: list[tuple[str, str]] = []
    for index, source in enumerate(sources):
        label = f"<archive {index + 1}>" if isinstance(source, bytes) else str(source)
        try:
            loaded.append(read_archive(source, label))
        except ArchiveFormatError as exc:
            unreadable.append((label, str(exc)))
    return verify_log(anchors, archives=loaded, live=live, options=options, unreadable=unreadable)


# ----- internals -------------------------------------------------------------------------
@dataclass
class _ChainWalk:
    """What the walk along one chain carries from a record to the next."""

    holes: set[int]  # ranks preceded by a missing archive
    hash_ok_of: dict[int, bool]  # id(record) -> its hash recomputes
    hashes: dict[bytes, Entry]  # record_hash -> entry
    explained_hash: set[int] = field(default_factory=set)  # seqs already diagnosed
    explained_link: set[int] = field(default_factory=set)
    shift: int = 0  # after a renumbering: seq a record was sealed at, minus its seq now
    stamp_run: int | None = None  # open failure runs (see Findings.extend_run)
    unstamped_run: int | None = None
    prev: Entry | None = None
    prev_prev: Entry | None = None


class _Verifier:
    """One verification run: pools the evidence, then runs every check into one report."""

    def __init__(self, anchors: TrustAnchors, options: VerifyOptions, token_check: TokenCheck):
        self.options = options
        self.report = VerificationReport()
        self.findings = Findings(self.report)
        self.fail = self.findings.fail
        self.note = self.findings.note
        self.checked = self.report.checked
        self.intermediates: list[x509.Certificate] = []  # every certificate in the evidence
        self.ocsp: dict[bytes, bytes] = {}  # sha256 -> every OCSP response in the evidence
        as_of = options.as_of or dt.datetime.now(dt.UTC)
        self.stamps = Stamps(self.findings, options, as_of, token_check, self.intermediates)
        self.signers = SignerCheck(self.findings, anchors, options, self.intermediates, self.ocsp)
        self.archives = ArchiveCheck(self.findings, anchors, options, self.intermediates)

    # ----- driver ------------------------------------------------------------------------
    def run(
        self,
        archives: list[LoadedArchive],
        live: LogEvidence | None,
        unreadable: Sequence[tuple[str, str]],
    ) -> VerificationReport:
        for label, reason in unreadable:
            self.fail(
                FailureKind.MANIFEST,
                f"cannot read archive: {reason}",
                rank=-1,
                layer=0,
                archive=label,
            )
        sources: list[LogEvidence] = [a.evidence for a in archives]
        if live is not None:
            sources.append(live)
        self._collect_certificates(sources)
        regular = [a for a in archives if a.manifest.kind is ArchiveKind.ARCHIVE]
        bundles = [a for a in archives if a.manifest.kind is ArchiveKind.BUNDLE]
        regular.sort(key=lambda a: (a.manifest.sequence or 0, a.manifest.created_at))
        live_rank = len(regular)
        for rank, archive in enumerate(regular):
            self.stamps.add(archive.evidence, rank, archive.label)
        if live is not None:
            self.stamps.add(live, live_rank, "live")
        self.stamps.check_overlaps()
        holes = self.archives.check_sequence(regular)
        for rank, archive in enumerate(regular):
            self.archives.check_manifest(archive, rank)
        entries: dict[str, list[Entry]] = defaultdict(list)
        for rank, archive in enumerate(regular):
            for record in archive.evidence.records:
                entries[record.chain_id].append(Entry(record, archive.label, rank, True))
        if live is not None:
            for record in live.records:
                entries[record.chain_id].append(Entry(record, "live", live_rank, False))
        for chain_id, chain_entries in entries.items():
            self._check_chain(chain_id, chain_entries, holes)
        for offset, bundle in enumerate(bundles):
            rank = live_rank + 1 + offset
            self.stamps.add(bundle.evidence, rank, bundle.label)
            self.stamps.check_overlaps()
            self.archives.check_manifest(bundle, rank)
            self._check_bundle(bundle, rank)
        return self.findings.finish()

    def _collect_certificates(self, sources: list[LogEvidence]) -> None:
        """Pool the certificates and OCSP responses every source carries."""
        known_certs: set[bytes] = set()
        for evidence in sources:
            for cert in evidence.certificates:
                digest = cert_sha256(cert)
                if digest not in known_certs:  # every archive repeats the same few
                    known_certs.add(digest)
                    self.intermediates.append(cert)
            for der in evidence.ocsp_responses:
                self.ocsp[hashlib.sha256(der).digest()] = der

    # ----- one chain ---------------------------------------------------------------------
    def _check_chain(self, chain_id: str, entries: list[Entry], holes: set[int]) -> None:
        unique = self._unique_copies(entries)
        self._check_stored_order(unique)
        ordered = sorted(unique, key=lambda e: (e.record.seq, e.rank))
        self.report.chains[chain_id] = {
            "first_seq": ordered[0].record.seq,
            "last_seq": ordered[-1].record.seq,
            "records": len(ordered),
        }
        hash_ok_of = {id(e.record): e.record.hash_ok() for e in ordered}
        self.stamps.check_batch_roots(chain_id, ordered, hash_ok_of)
        walk = _ChainWalk(holes, hash_ok_of, {e.record.record_hash: e for e in ordered})
        for index, entry in enumerate(ordered):
            nxt = ordered[index + 1].record if index + 1 < len(ordered) else None
            self._check_record(walk, entry, nxt)

    def _unique_copies(self, entries: list[Entry]) -> list[Entry]:
        """Copies of one record (archived and still in the database) count once.

        LogRecord equality ignores the body, which may have been purged since.
        A database row that differs from its archived copy was changed afterwards.
        """
        unique: list[Entry] = []
        seen: set[LogRecord] = set()
        first_copy: dict[int, Entry] = {}
        for entry in entries:
            r = entry.record
            if r in seen:
                continue
            earlier = first_copy.get(r.seq)
            if earlier is not None and earlier.rank != entry.rank:
                self.fail(
                    FailureKind.ALTERED,
                    f"differs from the copy of seq {r.seq} in {earlier.origin} "
                    f"(record {earlier.record.id})",
                    rank=entry.rank,
                    layer=0,
                    record=r,
                    archive=entry.origin,
                )
                continue
            first_copy.setdefault(r.seq, entry)
            seen.add(r)
            unique.append(entry)
        return unique

    def _check_stored_order(self, unique: list[Entry]) -> None:
        """Stored order must be seq order."""
        for before, after in itertools.pairwise(unique):
            if after.record.seq < before.record.seq:
                self.fail(
                    FailureKind.REORDERED,
                    f"record seq {before.record.seq} is stored before seq {after.record.seq}",
                    rank=before.rank,
                    layer=0,
                    record=before.record,
                    archive=before.origin,
                )

    def _check_record(self, walk: _ChainWalk, entry: Entry, nxt: LogRecord | None) -> None:
        """Every check of one record, in the layers the report orders failures by."""
        r = entry.record
        prev = walk.prev
        self.checked["records"] += 1
        if prev is not None and r.seq == prev.record.seq:
            self._check_duplicate(walk, entry, nxt)
            return
        # -- the record's own hash
        self.checked["hashes"] += 1
        hash_ok = walk.hash_ok_of[id(r)]
        if (
            not hash_ok
            and r.seq not in walk.explained_hash
            and not (walk.shift and as_seq(r, r.seq + walk.shift, r.prev_hash) == r.record_hash)
        ):
            walk.shift = (
                self._diagnose_hash(entry, prev, nxt, walk.explained_hash, walk.explained_link)
                or walk.shift
            )
        self._check_body(entry)
        # -- continuity with the previous record
        if prev is None:
            self._check_start(entry, walk.holes)
        else:
            self._check_continuity(walk, entry, prev)
        walk.stamp_run, walk.unstamped_run = self.stamps.check(
            entry, nxt, hash_ok, walk.stamp_run, walk.unstamped_run
        )
        self.signers.check(entry)
        walk.prev_prev, walk.prev = prev, entry

    def _check_duplicate(self, walk: _ChainWalk, entry: Entry, nxt: LogRecord | None) -> None:
        """A second record with the previous one's seq: one of the two was never in the chain."""
        r = entry.record
        assert walk.prev is not None
        linked = nxt is not None and nxt.prev_hash == r.record_hash
        extra = walk.prev if linked else entry
        self.fail(
            FailureKind.INSERTED,
            f"a second record with seq {r.seq}; the chain continues from the other one",
            rank=extra.rank,
            layer=0,
            record=extra.record,
            archive=extra.origin,
        )
        if linked:
            walk.prev = entry

    def _check_body(self, entry: Entry) -> None:
        """The body, where it was kept (in the record or as a body file), against its digest."""
        r = entry.record
        if r.body is not None or r.body_file is not None:
            self.checked["bodies"] += 1
            problem = r.body_problem()
            if problem is not None:
                self.fail(
                    FailureKind.ALTERED,
                    f"{problem} (body changed or removed)",
                    rank=entry.rank,
                    layer=0,
                    record=r,
                    archive=entry.origin,
                )

    def _check_continuity(self, walk: _ChainWalk, entry: Entry, prev: Entry) -> None:
        """A gap in the seqs is ``missing``; otherwise the record must link to ``prev``."""
        r, p = entry.record, prev.record
        if r.seq > p.seq + 1:
            if not any(prev.rank < hole <= entry.rank for hole in walk.holes):
                missing = f"seq {p.seq + 1}" + (f"..{r.seq - 1}" if r.seq - 1 > p.seq + 1 else "")
                self.fail(
                    FailureKind.MISSING,
                    f"{missing} absent between records {p.id} and {r.id}",
                    rank=entry.rank,
                    layer=0,
                    chain_id=r.chain_id,
                    seq=p.seq + 1,
                    archive=entry.origin,
                )
        else:
            self.checked["links"] += 1
            if r.prev_hash != p.record_hash and r.seq not in walk.explained_link:
                self._diagnose_link(entry, prev, walk.prev_prev, walk.hashes)

    def _check_start(self, entry: Entry, holes: set[int]) -> None:
        r = entry.record
        if r.seq == 1:
            self.checked["links"] += 1
            if r.prev_hash != genesis_hash(r.chain_id):
                self.fail(
                    FailureKind.ALTERED,
                    "first record of the chain does not link to the chain's genesis value",
                    rank=entry.rank,
                    layer=0,
                    record=r,
                    archive=entry.origin,
                )
            return
        if any(hole <= entry.rank for hole in holes):
            return  # explained by the archive_chain failure already reported
        if self.options.complete:
            self.fail(
                FailureKind.MISSING,
                f"chain starts at seq {r.seq}: seqs 1..{r.seq - 1} are absent",
                rank=entry.rank,
                layer=0,
                chain_id=r.chain_id,
                seq=1,
                archive=entry.origin,
            )
        else:
            self.note(f"chain {r.chain_id} starts at seq {r.seq} in the evidence given")

    def _diagnose_hash(
        self,
        entry: Entry,
        prev: Entry | None,
        nxt: LogRecord | None,
        explained_hash: set[int],
        explained_link: set[int],
    ) -> int:
        """Name a record whose hash does not recompute; returns a renumbering shift, if any."""
        r = entry.record
        common: dict[str, Any] = {"rank": entry.rank, "layer": 0, "archive": entry.origin}
        if as_seq(r, r.seq + 1, r.prev_hash) == r.record_hash:
            if nxt is not None and nxt.seq == r.seq + 1 and nxt.record_hash == r.prev_hash:
                self.fail(
                    FailureKind.REORDERED,
                    f"records seq {r.seq} and {r.seq + 1} were swapped "
                    f"({r.id} was sealed at seq {r.seq + 1})",
                    record=r,
                    **common,
                )
                explained_hash.add(r.seq + 1)
                explained_link.update({r.seq, r.seq + 1, r.seq + 2})
                return 0
            self.fail(
                FailureKind.MISSING,
                f"the record at seq {r.seq} was removed and the later records renumbered "
                f"({r.id} was sealed at seq {r.seq + 1})",
                record=r,
                **common,
            )
            explained_link.add(r.seq)
            return 1
        if as_seq(r, r.seq - 1, r.prev_hash) == r.record_hash:
            if prev is not None and prev.record.prev_hash == r.prev_hash:
                self.fail(
                    FailureKind.INSERTED,
                    f"record {prev.record.id} was inserted: the next record was sealed at "
                    f"seq {prev.record.seq} directly after seq {prev.record.seq - 1}",
                    rank=prev.rank,
                    layer=0,
                    record=prev.record,
                    archive=prev.origin,
                )
                explained_link.add(r.seq)
                return -1
            self.fail(
                FailureKind.REORDERED,
                f"{r.id} was sealed at seq {r.seq - 1}, not {r.seq}",
                record=r,
                **common,
            )
            return 0
        self.fail(
            FailureKind.ALTERED,
            "record hash does not match its content (record changed after sealing)",
            record=r,
            **common,
        )
        return 0

    def _diagnose_link(
        self,
        entry: Entry,
        prev: Entry,
        prev_prev: Entry | None,
        hashes: dict[bytes, Entry],
    ) -> None:
        r, p = entry.record, prev.record
        if prev_prev is not None and r.prev_hash == prev_prev.record.record_hash:
            self.fail(
                FailureKind.INSERTED,
                f"record {p.id} was inserted: the next record (seq {r.seq}) links past "
                f"it to seq {prev_prev.record.seq}",
                rank=prev.rank,
                layer=0,
                record=p,
                archive=prev.origin,
            )
        elif r.prev_hash in hashes:
            other = hashes[r.prev_hash].record
            self.fail(
                FailureKind.REORDERED,
                f"record links to seq {other.seq}, not to seq {p.seq}",
                rank=entry.rank,
                layer=0,
                record=r,
                archive=entry.origin,
            )
        elif p.hash_ok():
            self.fail(
                FailureKind.ALTERED,
                f"seq {r.seq} does not link to this record: it was replaced by a record "
                "with a recomputed hash, or a record after it was removed and the rest "
                "renumbered",
                rank=prev.rank,
                layer=0,
                record=p,
                archive=prev.origin,
            )

    # ----- bundles -----------------------------------------------------------------------
    def _check_bundle(self, bundle: LoadedArchive, rank: int) -> None:
        """An exchange's records on their own: each hashes, links where adjacent, is stamped."""
        records = sorted(bundle.evidence.records, key=lambda r: (r.chain_id, r.seq))
        previous: LogRecord | None = None
        for r in records:
            entry = Entry(r, bundle.label, rank, False)
            self.checked["records"] += 1
            self.checked["hashes"] += 1
            hash_ok = r.hash_ok()
            if not hash_ok:
                self.fail(
                    FailureKind.ALTERED,
                    "record hash does not match its content (record changed after sealing)",
                    rank=rank,
                    layer=0,
                    record=r,
                    archive=bundle.label,
                )
            self._check_body(entry)
            if previous is not None and previous.chain_id == r.chain_id:
                if previous.seq == r.seq:
                    self.fail(
                        FailureKind.INSERTED,
                        f"a second record with seq {r.seq}",
                        rank=rank,
                        layer=0,
                        record=r,
                        archive=bundle.label,
                    )
                elif previous.seq + 1 == r.seq:
                    self.checked["links"] += 1
                    if r.prev_hash != previous.record_hash:
                        self.fail(
                            FailureKind.ALTERED,
                            f"does not link to seq {previous.seq} in the bundle",
                            rank=rank,
                            layer=0,
                            record=r,
                            archive=bundle.label,
                        )
            self.stamps.check(entry, None, hash_ok, None, None)
            self.signers.check(entry)
            previous = r
        self.report.chains.setdefault(
            f"bundle:{bundle.manifest.archive_id}", {"records": len(records)}
        )
