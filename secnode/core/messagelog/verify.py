"""The auditor's offline verifier: judge a message log from its files and trust anchors only.

Input is what an auditor can be handed: archives and evidence bundles
(:class:`~secnode.core.messagelog.archive.LoadedArchive`), and/or a dump of
the live database (:class:`~secnode.core.messagelog.archive.LogEvidence`),
plus the trust anchors (approved CA certificates, approved TSA
certificates). Nothing is fetched and the node is not trusted: every
signature, token and hash is recomputed here.

Failure kinds (see ``docs/audit.md`` for the auditor's reading of each):

``altered``        a record's hash or body digest does not match its content, or
                   a record (with a recomputed hash) is not the one that was stamped
``missing``        a seq is absent (gap, or records renumbered after a deletion)
``reordered``      records are out of seq order, or two were swapped
``inserted``       a record that was never in the chain (duplicate seq, or the
                   next record still links past it, or the stamps show it)
``unstamped``      a record that should be covered by a time-stamped batch is not
``bad_token``      a batch's RFC 3161 token does not verify or does not cover its root
``bad_signature``  a message signature, its signer's chain or OCSP status fails
``archive_chain``  an archive is missing from the sequence (previous hash mismatch)
``manifest``       an archive's manifest signature, file hashes or declared ranges

The report names the *first* failure in log order (archives in sequence, then
the live records; within them by chain, then seq) and lists all of them. The
detection is layered so that one tampering yields one failure, not a cascade:
a deleted record is one ``missing`` and not also a broken link, and a chain
recomputed after a forged record is one ``inserted`` plus one summary of the
records after it.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import enum
import hashlib
import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509 import ocsp as x509_ocsp

from certs.chain import ChainError, verify_chain
from certs.cms import CMSError, verify_detached
from certs.ocsp import CLOCK_SKEW, OCSPError, OCSPStatus, validate_response
from certs.profiles import ProfileError
from certs.tsa_verify import verify_token
from secnode.core.cert_member import member_id_of
from secnode.core.identifiers import IdentifierError, NodeId
from secnode.core.jsonfmt import cert_sha256
from secnode.core.messagelog.archive import (
    MANIFEST_NAME,
    RECORDS_NAME,
    SIGNATURE_NAME,
    ArchiveFormatError,
    ArchiveKind,
    LoadedArchive,
    LogEvidence,
    read_archive,
)
from secnode.core.messagelog.batch import RecordProof, StampedBatch, check_proof
from secnode.core.messagelog.merkle import merkle_root, root_from_proof
from secnode.core.messagelog.record import LogRecord, canonical_bytes, genesis_hash, record_hash
from secnode.core.msgsig import SignatureError, SignatureVerifier

#: X-Road's default acceptable time-stamp failure period (``acceptable-timestamp-failure-period``).
DEFAULT_UNSTAMPED_GRACE = dt.timedelta(seconds=14400)


class FailureKind(enum.StrEnum):
    ALTERED = "altered"
    MISSING = "missing"
    REORDERED = "reordered"
    INSERTED = "inserted"
    UNSTAMPED = "unstamped"
    BAD_TOKEN = "bad_token"
    BAD_SIGNATURE = "bad_signature"
    ARCHIVE_CHAIN = "archive_chain"
    MANIFEST = "manifest"


@dataclass(frozen=True)
class Failure:
    """One problem, located as precisely as the evidence allows."""

    kind: FailureKind
    message: str
    chain_id: str | None = None
    seq: int | None = None
    record_id: str | None = None
    batch_id: str | None = None
    archive: str | None = None
    last_seq: int | None = None  # a run of records sharing one failure ends here

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "message": self.message,
            "chain_id": self.chain_id,
            "seq": self.seq,
            "record_id": self.record_id,
            "batch_id": self.batch_id,
            "archive": self.archive,
            "last_seq": self.last_seq,
        }

    def describe(self) -> str:
        where = ""
        if self.chain_id is not None and self.seq is not None:
            where = f" at {self.chain_id}#{self.seq}"
            if self.record_id:
                where += f" (record {self.record_id})"
        elif self.archive:
            where = f" in {self.archive}"
        run = f" (and every record up to seq {self.last_seq})" if self.last_seq else ""
        return f"{self.kind.value}{where}: {self.message}{run}"


@dataclass
class VerificationReport:
    """The verifier's answer; ``to_json`` is what ``secnode log verify --json`` prints."""

    checked: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    chains: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first_failure(self) -> Failure | None:
        return self.failures[0] if self.failures else None

    def kinds(self) -> list[FailureKind]:
        return [f.kind for f in self.failures]

    def to_json(self) -> dict[str, Any]:
        first = self.first_failure
        return {
            "ok": self.ok,
            "checked": dict(sorted(self.checked.items())),
            "failed": dict(sorted(Counter(f.kind.value for f in self.failures).items())),
            "first_failure": None if first is None else first.to_json(),
            "failures": [f.to_json() for f in self.failures],
            "notes": list(self.notes),
            "chains": self.chains,
        }

    def summary(self) -> str:
        """One line for humans: the verdict and the first failure."""
        records = self.checked.get("records", 0)
        if self.ok:
            return f"OK: {records} records, {self.checked.get('batches', 0)} batches verified"
        first = self.first_failure
        assert first is not None
        return f"FAILED ({len(self.failures)} problem(s)): {first.describe()}"


@dataclass(frozen=True)
class TrustAnchors:
    """What the auditor trusts, from the configuration anchor / global configuration.

    ``ca_certs``: approved CAs, for message signers, the archive signer and
    (unless TSAs are pinned) TSA certificates. ``tsa_certs``: approved TSA
    certificates; when given, a token must be signed by one of them.
    """

    ca_certs: Sequence[x509.Certificate]
    tsa_certs: Sequence[x509.Certificate] = ()


@dataclass(frozen=True)
class VerifyOptions:
    """``as_of``: when the evidence was taken (default now); live records older than
    ``as_of - unstamped_grace`` must be stamped. ``complete``: the evidence must go
    back to each chain's first record and to archive 1; false when an auditor was
    handed only recent archives or a database whose older rows were purged."""

    as_of: dt.datetime | None = None
    unstamped_grace: dt.timedelta = DEFAULT_UNSTAMPED_GRACE
    complete: bool = True
    check_ocsp: bool = True
    ocsp_max_age: float | None = 3600.0


#: Checks one token over one root; returns genTime, raises with a reason on failure.
TokenCheck = Callable[[bytes, bytes, Sequence[x509.Certificate]], dt.datetime]


def tsa_token_check(anchors: TrustAnchors) -> TokenCheck:
    """The real check: :func:`certs.tsa_verify.verify_token` against the anchors."""
    trusted = [*anchors.ca_certs, *anchors.tsa_certs]
    pinned = list(anchors.tsa_certs)

    def check(token: bytes, root: bytes, intermediates: Sequence[x509.Certificate]) -> dt.datetime:
        info = verify_token(
            token, root, "sha256", trusted, intermediates=intermediates, tsa_certs=pinned
        )
        if pinned and info.tsa_cert not in pinned:
            raise ValueError(
                f"token signed by {info.tsa_cert.subject.rfc4514_string()}, "
                "which is not an approved TSA"
            )
        return info.gen_time

    return check


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
@dataclass(frozen=True)
class _Entry:
    record: LogRecord
    origin: str
    rank: int  # position of the source in log order: archives by sequence, then live
    strict: bool  # archived records must be stamped whatever their age


_INF = 2**62


def _as_seq(record: LogRecord, seq: int, prev: bytes) -> bytes:
    """The hash ``record`` would have if it had been sealed at ``seq`` after ``prev``."""
    return record_hash(prev, canonical_bytes(dataclasses.replace(record, seq=seq)))


_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
_LATEST = dt.datetime.max.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class _Window:
    """A closed time interval in which a cached verdict holds; outside it, judge afresh."""

    start: dt.datetime
    end: dt.datetime

    def covers(self, when: dt.datetime) -> bool:
        return self.start <= when <= self.end

    def within(self, start: dt.datetime, end: dt.datetime) -> _Window:
        return _Window(max(self.start, start), min(self.end, end))

    @classmethod
    def of_certificates(cls, certs: Iterable[x509.Certificate]) -> _Window:
        """Where every one of ``certs`` is within its validity period."""
        window = cls(_EARLIEST, _LATEST)
        for cert in certs:
            window = window.within(cert.not_valid_before_utc, cert.not_valid_after_utc)
        return window


def _staple_window(
    der: bytes, status: OCSPStatus, issuer: x509.Certificate, max_age: float | None
) -> _Window:
    """Where ``validate_response`` is known to accept the response: the freshness rule of
    :func:`certs.ocsp.validate_response`, narrowed to the validity of every certificate
    the response carries other than the issuer (a delegated responder's among them)."""
    end = _LATEST
    if max_age is not None:
        end = min(end, status.this_update + dt.timedelta(seconds=max_age))
    if status.next_update is not None:
        end = min(end, status.next_update)
    window = _Window(status.this_update - CLOCK_SKEW, end)
    carried = x509_ocsp.load_der_ocsp_response(der).certificates
    signers = _Window.of_certificates(c for c in carried if c != issuer)
    return window.within(signers.start, signers.end)


def _status_problem(status: str, when: dt.datetime) -> str | None:
    if status != "good":
        return f"signer certificate status was {status} at {when}"
    return None


class _Verifier:
    def __init__(self, anchors: TrustAnchors, options: VerifyOptions, token_check: TokenCheck):
        self.anchors = anchors
        self.options = options
        self.token_check = token_check
        self.as_of = options.as_of or dt.datetime.now(dt.UTC)
        self.report = VerificationReport()
        self.checked = self.report.checked
        self._failures: list[tuple[tuple[int, int, int, int, int], Failure]] = []
        self._counter = 0
        self.intermediates: list[x509.Certificate] = []
        self.ocsp: dict[bytes, bytes] = {}
        self.batches: dict[str, StampedBatch] = {}
        self.batch_ok: dict[str, bool] = {}
        self.batch_root_bad: set[str] = set()
        self.batch_whole: set[str] = set()  # every record present and hashing to the root
        self.by_chain: dict[str, list[StampedBatch]] = defaultdict(list)
        self.proofs: dict[tuple[str, int], list[RecordProof]] = defaultdict(list)
        self.sig_verifier = SignatureVerifier()
        self._chain_windows: dict[bytes, _Window] = {}  # signer sha256 -> path valid in
        self._chain_rank: dict[str, int] = {}
        self._issuers: dict[bytes, x509.Certificate] = {}
        self._staples: dict[tuple[bytes, bytes], tuple[_Window, str]] = {}  # -> status
        self._batch_index: dict[str, tuple[list[int], list[StampedBatch]]] = {}
        self._batch_rank: dict[str, tuple[int, str]] = {}
        self._overlaps: set[tuple[str, str]] = set()
        self._runs: dict[str, int | None] = {}

    # ----- failure bookkeeping ---------------------------------------------------------
    def fail(
        self,
        kind: FailureKind,
        message: str,
        *,
        rank: int,
        layer: int,
        chain_id: str | None = None,
        seq: int | None = None,
        record: LogRecord | None = None,
        batch_id: str | None = None,
        archive: str | None = None,
        order_seq: int | None = None,
    ) -> None:
        """Record a failure; ``rank``/``order_seq``/``layer`` place it in log order."""
        if record is not None:
            chain_id, seq = record.chain_id, record.seq
        chain_rank = self._chain_rank.setdefault(chain_id or "", len(self._chain_rank))
        position = order_seq if order_seq is not None else (seq if seq is not None else -1)
        self._counter += 1
        key = (rank, chain_rank, position, layer, self._counter)
        failure = Failure(
            kind, message, chain_id, seq, record.id if record else None, batch_id, archive
        )
        self._failures.append((key, failure))

    def extend_run(self, run: int | None, record: LogRecord) -> bool:
        """Fold ``record`` into failure number ``run`` if it directly follows it.

        A chain recomputed after one forged record makes every later proof
        fail; those are one finding, reported once with the range it spans.
        """
        if run is None:
            return False
        key, last = self._failures[run]
        end = last.last_seq if last.last_seq is not None else last.seq
        if last.chain_id != record.chain_id or end != record.seq - 1:
            return False
        self._failures[run] = (key, dataclasses.replace(last, last_seq=record.seq))
        return True

    # ----- driver ------------------------------------------------------------------------
    def run(
        self,
        archives: list[LoadedArchive],
        live: LogEvidence | None,
        unreadable: Sequence[tuple[str, str]],
    ) -> VerificationReport:
        for label, reason in unreadable:
            self.fail(FailureKind.MANIFEST, f"cannot read archive: {reason}", rank=-1, layer=0,
                      archive=label)
        sources: list[LogEvidence] = [a.evidence for a in archives]
        if live is not None:
            sources.append(live)
        known_certs: set[bytes] = set()
        for evidence in sources:
            for cert in evidence.certificates:
                digest = cert_sha256(cert)
                if digest not in known_certs:  # every archive repeats the same few
                    known_certs.add(digest)
                    self.intermediates.append(cert)
            for der in evidence.ocsp_responses:
                self.ocsp[hashlib.sha256(der).digest()] = der
        regular = [a for a in archives if a.manifest.kind is ArchiveKind.ARCHIVE]
        bundles = [a for a in archives if a.manifest.kind is ArchiveKind.BUNDLE]
        regular.sort(key=lambda a: (a.manifest.sequence or 0, a.manifest.created_at))
        live_rank = len(regular)
        for rank, archive in enumerate(regular):
            self._add_batches(archive.evidence, rank, archive.label)
        if live is not None:
            self._add_batches(live, live_rank, "live")
        self._check_overlaps()
        holes = self._check_archive_chain(regular)
        for rank, archive in enumerate(regular):
            self._check_manifest(archive, rank)
        entries: dict[str, list[_Entry]] = defaultdict(list)
        for rank, archive in enumerate(regular):
            for record in archive.evidence.records:
                entries[record.chain_id].append(_Entry(record, archive.label, rank, True))
        if live is not None:
            for record in live.records:
                entries[record.chain_id].append(_Entry(record, "live", live_rank, False))
        for chain_id, chain_entries in entries.items():
            self._check_chain(chain_id, chain_entries, holes)
        for offset, bundle in enumerate(bundles):
            rank = live_rank + 1 + offset
            self._add_batches(bundle.evidence, rank, bundle.label)
            self._check_overlaps()
            self._check_manifest(bundle, rank)
            self._check_bundle(bundle, rank)
        self._failures.sort(key=lambda item: item[0])
        self.report.failures = [f for _, f in self._failures]
        return self.report

    # ----- batches and tokens ------------------------------------------------------------
    def _add_batches(self, evidence: LogEvidence, rank: int, origin: str) -> None:
        for batch in evidence.batches:
            known = self.batches.get(batch.batch_id)
            if known is not None:
                if known != batch:
                    self.fail(
                        FailureKind.BAD_TOKEN,
                        f"two different batches carry the id {batch.batch_id} ({origin})",
                        rank=rank, layer=1, chain_id=batch.chain_id, seq=batch.first_seq,
                        batch_id=batch.batch_id, archive=origin,
                    )
                continue
            self.batches[batch.batch_id] = batch
            self._batch_rank[batch.batch_id] = (rank, origin)
            self._check_token(batch, rank, origin)
            self.by_chain[batch.chain_id].append(batch)
            self._batch_index.pop(batch.chain_id, None)
        for proof in evidence.proofs:
            bucket = self.proofs[(proof.batch_id, proof.index)]
            if proof not in bucket:
                bucket.append(proof)

    def _check_overlaps(self) -> None:
        """Batches of one chain must not overlap: a seq has exactly one stamped position."""
        for chain_id, batches in self.by_chain.items():
            ordered = sorted(batches, key=lambda b: (b.first_seq, b.last_seq))
            reach: StampedBatch | None = None
            for batch in ordered:
                if reach is not None and batch.first_seq <= reach.last_seq:
                    pair = (reach.batch_id, batch.batch_id)
                    if pair not in self._overlaps:
                        self._overlaps.add(pair)
                        rank, origin = self._batch_rank[batch.batch_id]
                        self.fail(
                            FailureKind.BAD_TOKEN,
                            f"batch {batch.batch_id} overlaps batch {reach.batch_id}",
                            rank=rank, layer=1, chain_id=chain_id, seq=batch.first_seq,
                            batch_id=batch.batch_id, archive=origin,
                        )
                if reach is None or batch.last_seq > reach.last_seq:
                    reach = batch

    def _check_token(self, batch: StampedBatch, rank: int, origin: str) -> None:
        self.checked["batches"] += 1
        self.checked["tokens"] += 1
        try:
            self.token_check(batch.token, batch.root, self.intermediates)
        except Exception as exc:  # every token problem is reported, never raised
            self.batch_ok[batch.batch_id] = False
            self.fail(
                FailureKind.BAD_TOKEN,
                f"time-stamp token of batch {batch.batch_id} (seqs {batch.first_seq}.."
                f"{batch.last_seq}) does not verify over its root: {exc}",
                rank=rank, layer=1, chain_id=batch.chain_id, seq=batch.first_seq,
                batch_id=batch.batch_id, archive=origin,
            )
        else:
            self.batch_ok[batch.batch_id] = True

    def _batch_for(self, chain_id: str, seq: int) -> StampedBatch | None:
        """The batch covering ``chain_id#seq`` (binary search: logs have many batches)."""
        index = self._batch_index.get(chain_id)
        if index is None:
            ordered = sorted(self.by_chain.get(chain_id, ()), key=lambda b: b.first_seq)
            index = self._batch_index[chain_id] = ([b.first_seq for b in ordered], ordered)
        firsts, batches = index
        at = bisect.bisect_right(firsts, seq) - 1
        if at >= 0 and batches[at].first_seq <= seq <= batches[at].last_seq:
            return batches[at]
        return None

    def _stamped_at(self, leaf: bytes, chain_id: str, seq: int) -> bool:
        """Whether ``leaf`` is what was stamped at ``chain_id#seq`` (per the stored proofs)."""
        batch = self._batch_for(chain_id, seq)
        if batch is None:
            return False
        return any(
            check_proof(batch, leaf, proof)
            for proof in self.proofs.get((batch.batch_id, seq - batch.first_seq), ())
        )

    # ----- archives ----------------------------------------------------------------------
    def _check_archive_chain(self, archives: list[LoadedArchive]) -> set[int]:
        """Check sequence numbers and previous hashes; return ranks preceded by a hole."""
        holes: set[int] = set()
        node_ids = {a.manifest.node_id for a in archives}
        if len(node_ids) > 1:
            self.note(f"archives of several nodes were given: {', '.join(sorted(node_ids))}")
        previous: LoadedArchive | None = None
        for rank, archive in enumerate(archives):
            self.checked["archives"] += 1
            m = archive.manifest
            where = f"archive {m.archive_id} (sequence {m.sequence})"
            if previous is None:
                if m.sequence != 1 or m.previous_archive_sha256 is not None:
                    if m.sequence == 1:
                        self._fail_archive_chain(
                            f"{where} is the first archive but names a previous archive",
                            archive, rank,
                        )
                    elif self.options.complete:
                        holes.add(rank)
                        self._fail_archive_chain(
                            f"archives 1..{(m.sequence or 1) - 1} before {where} are missing",
                            archive, rank,
                        )
                    else:
                        holes.add(rank)
                        self.note(f"archives before {where} were not supplied")
            else:
                pm = previous.manifest
                if m.sequence == pm.sequence:
                    self._fail_archive_chain(
                        f"{where} and archive {pm.archive_id} claim the same sequence number",
                        archive, rank,
                    )
                elif m.previous_archive_sha256 != previous.sha256:
                    holes.add(rank)
                    gap = (
                        f"archive(s) {(pm.sequence or 0) + 1}..{(m.sequence or 0) - 1} missing"
                        if (m.sequence or 0) > (pm.sequence or 0) + 1
                        else "the previous archive was replaced"
                    )
                    named = m.previous_archive_sha256
                    self._fail_archive_chain(
                        f"{where} names previous archive "
                        f"{named.hex() if named else 'none'}, but the archive before it is "
                        f"{pm.archive_id} with hash {previous.sha256.hex()}: {gap}",
                        archive, rank,
                    )
                elif m.sequence != (pm.sequence or 0) + 1:
                    self._fail_archive_chain(
                        f"{where} follows sequence {pm.sequence} (sequence numbers skip)",
                        archive, rank,
                    )
            previous = archive
        return holes

    def note(self, text: str) -> None:
        self.report.notes.append(text)

    def _fail_archive_chain(self, message: str, archive: LoadedArchive, rank: int) -> None:
        m = archive.manifest
        self.fail(FailureKind.ARCHIVE_CHAIN, message, rank=rank, layer=-1,
                  chain_id=m.chain_id, seq=m.first_seq, order_seq=-1, archive=archive.label)

    def _check_manifest(self, archive: LoadedArchive, rank: int) -> None:
        m = archive.manifest
        self.checked["manifests"] += 1

        def problem(message: str, order_seq: int = -1) -> None:
            self.fail(FailureKind.MANIFEST, f"{archive.label}: {message}", rank=rank, layer=0,
                      chain_id=m.chain_id, seq=m.first_seq, order_seq=order_seq,
                      archive=archive.label)

        try:
            verified = verify_detached(archive.signature, archive.manifest_bytes)
        except CMSError as exc:
            problem(f"manifest signature does not verify: {exc}")
        else:
            signer = verified.signer
            if cert_sha256(signer) != m.signer_cert_sha256:
                problem("manifest.sig is made by another certificate than the manifest names")
            try:
                verify_chain(signer, self.anchors.ca_certs, self.intermediates, at=m.created_at)
            except ChainError as exc:
                problem(f"manifest signer is not trusted: {exc}")
            try:
                if member_id_of(signer.subject) != NodeId.parse(m.node_id).member:
                    problem(f"manifest signer does not belong to node {m.node_id}")
            except (ProfileError, IdentifierError) as exc:
                problem(f"manifest signer or node id unusable: {exc}")
        for name, content in archive.files.items():
            if name in (MANIFEST_NAME, SIGNATURE_NAME):
                continue
            expected = m.files.get(name)
            if expected is None:
                problem(f"{name} is not listed in the manifest")
            elif hashlib.sha256(content).digest() != expected:
                # Placed after the archive's records: a record found altered inside is
                # the more precise report and comes first.
                problem(f"SHA-256 of {name} differs from the manifest",
                        order_seq=_INF if name == RECORDS_NAME else -1)
        for name in m.files:
            if name not in archive.files:
                problem(f"{name} is listed in the manifest but absent")
        records = archive.evidence.records
        if len(records) != m.record_count:
            problem(f"manifest declares {m.record_count} records, archive holds {len(records)}",
                    order_seq=_INF)
        if records and m.kind is ArchiveKind.ARCHIVE:
            if {r.chain_id for r in records} != {m.chain_id}:
                problem(f"records are not all of chain {m.chain_id}")
            if {r.node_id for r in records} != {m.node_id}:
                problem(f"records are not all of node {m.node_id}")
            first, last = records[0].seq, records[-1].seq
            if m.first_seq is not None and first > m.first_seq:
                self.fail(FailureKind.MISSING,
                          f"archive {archive.label} declares seqs from {m.first_seq} but its "
                          f"records start at {first}", rank=rank, layer=0, chain_id=m.chain_id,
                          seq=m.first_seq, archive=archive.label)
            if m.last_seq is not None and last < m.last_seq:
                self.fail(FailureKind.MISSING,
                          f"archive {archive.label} declares seqs up to {m.last_seq} but its "
                          f"records end at {last}", rank=rank, layer=0, chain_id=m.chain_id,
                          seq=last + 1, archive=archive.label)
        if records and m.kind is ArchiveKind.ARCHIVE and (
            m.first_time != min(r.time for r in records)
            or m.last_time != max(r.time for r in records)
        ):
            problem("declared time range differs from the records'", order_seq=_INF)

    # ----- one chain ---------------------------------------------------------------------
    def _check_chain(
        self,
        chain_id: str,
        entries: list[_Entry],
        holes: set[int],
    ) -> None:
        # Copies of one record (archived and still in the database) count once;
        # LogRecord equality ignores the body, which may have been purged since.
        # A database row that differs from its archived copy was changed afterwards.
        unique: list[_Entry] = []
        seen: set[LogRecord] = set()
        first_copy: dict[int, _Entry] = {}
        for entry in entries:
            r = entry.record
            if r in seen:
                continue
            earlier = first_copy.get(r.seq)
            if earlier is not None and earlier.rank != entry.rank:
                self.fail(FailureKind.ALTERED,
                          f"differs from the copy of seq {r.seq} in {earlier.origin} "
                          f"(record {earlier.record.id})", rank=entry.rank, layer=0, record=r,
                          archive=entry.origin)
                continue
            first_copy.setdefault(r.seq, entry)
            seen.add(r)
            unique.append(entry)
        # Stored order must be seq order.
        for before, after in itertools.pairwise(unique):
            if after.record.seq < before.record.seq:
                self.fail(
                    FailureKind.REORDERED,
                    f"record seq {before.record.seq} is stored before seq {after.record.seq}",
                    rank=before.rank, layer=0, record=before.record, archive=before.origin,
                )
        ordered = sorted(unique, key=lambda e: (e.record.seq, e.rank))
        self.report.chains[chain_id] = {
            "first_seq": ordered[0].record.seq, "last_seq": ordered[-1].record.seq,
            "records": len(ordered),
        }
        hash_ok_of = {id(e.record): e.record.hash_ok() for e in ordered}
        self._check_batch_roots(chain_id, ordered, hash_ok_of)
        explained_hash: set[int] = set()
        explained_link: set[int] = set()
        shift = 0  # after a renumbering: seq a record was sealed at, minus its seq now
        stamp_run: int | None = None
        unstamped_run: int | None = None
        prev: _Entry | None = None
        prev_prev: _Entry | None = None
        hashes = {e.record.record_hash: e for e in ordered}
        for index, entry in enumerate(ordered):
            r = entry.record
            nxt = ordered[index + 1].record if index + 1 < len(ordered) else None
            self.checked["records"] += 1
            # -- duplicate seq: one of the two was never in the chain
            if prev is not None and r.seq == prev.record.seq:
                linked = nxt is not None and nxt.prev_hash == r.record_hash
                extra = prev if linked else entry
                self.fail(FailureKind.INSERTED,
                          f"a second record with seq {r.seq}; the chain continues from the "
                          "other one", rank=extra.rank, layer=0, record=extra.record,
                          archive=extra.origin)
                if linked:
                    prev = entry
                continue
            # -- the record's own hash
            self.checked["hashes"] += 1
            hash_ok = hash_ok_of[id(r)]
            if not hash_ok and r.seq not in explained_hash and not (
                shift and _as_seq(r, r.seq + shift, r.prev_hash) == r.record_hash
            ):
                shift = self._diagnose_hash(
                    entry, prev, nxt, explained_hash, explained_link
                ) or shift
            # -- body against its digest
            if r.body is not None:
                self.checked["bodies"] += 1
                if not r.body_ok():
                    self.fail(FailureKind.ALTERED,
                              "body does not match body_sha256/body_size (body changed)",
                              rank=entry.rank, layer=0, record=r, archive=entry.origin)
            # -- continuity with the previous record
            if prev is None:
                self._check_start(entry, holes)
            else:
                p = prev.record
                if r.seq > p.seq + 1:
                    if not any(prev.rank < hole <= entry.rank for hole in holes):
                        missing = f"seq {p.seq + 1}" + (
                            f"..{r.seq - 1}" if r.seq - 1 > p.seq + 1 else ""
                        )
                        self.fail(
                            FailureKind.MISSING,
                            f"{missing} absent between records {p.id} and {r.id}",
                            rank=entry.rank, layer=0, chain_id=chain_id, seq=p.seq + 1,
                            archive=entry.origin,
                        )
                else:
                    self.checked["links"] += 1
                    if r.prev_hash != p.record_hash and r.seq not in explained_link:
                        self._diagnose_link(entry, prev, prev_prev, hashes)
            # -- time-stamp coverage
            stamp_run, unstamped_run = self._check_stamp(
                entry, nxt, hash_ok, stamp_run, unstamped_run
            )
            # -- message signature
            self._check_signature(entry)
            prev_prev, prev = prev, entry

    def _check_start(self, entry: _Entry, holes: set[int]) -> None:
        r = entry.record
        if r.seq == 1:
            self.checked["links"] += 1
            if r.prev_hash != genesis_hash(r.chain_id):
                self.fail(FailureKind.ALTERED,
                          "first record of the chain does not link to the chain's genesis value",
                          rank=entry.rank, layer=0, record=r, archive=entry.origin)
            return
        if any(hole <= entry.rank for hole in holes):
            return  # explained by the archive_chain failure already reported
        if self.options.complete:
            self.fail(FailureKind.MISSING,
                      f"chain starts at seq {r.seq}: seqs 1..{r.seq - 1} are absent",
                      rank=entry.rank, layer=0, chain_id=r.chain_id, seq=1, archive=entry.origin)
        else:
            self.note(f"chain {r.chain_id} starts at seq {r.seq} in the evidence given")

    def _diagnose_hash(
        self,
        entry: _Entry,
        prev: _Entry | None,
        nxt: LogRecord | None,
        explained_hash: set[int],
        explained_link: set[int],
    ) -> int:
        """Name a record whose hash does not recompute; returns a renumbering shift, if any."""
        r = entry.record
        common: dict[str, Any] = {"rank": entry.rank, "layer": 0, "archive": entry.origin}
        if _as_seq(r, r.seq + 1, r.prev_hash) == r.record_hash:
            if nxt is not None and nxt.seq == r.seq + 1 and nxt.record_hash == r.prev_hash:
                self.fail(FailureKind.REORDERED,
                          f"records seq {r.seq} and {r.seq + 1} were swapped "
                          f"({r.id} was sealed at seq {r.seq + 1})", record=r, **common)
                explained_hash.add(r.seq + 1)
                explained_link.update({r.seq, r.seq + 1, r.seq + 2})
                return 0
            self.fail(FailureKind.MISSING,
                      f"the record at seq {r.seq} was removed and the later records renumbered "
                      f"({r.id} was sealed at seq {r.seq + 1})", record=r, **common)
            explained_link.add(r.seq)
            return 1
        if _as_seq(r, r.seq - 1, r.prev_hash) == r.record_hash:
            if prev is not None and prev.record.prev_hash == r.prev_hash:
                self.fail(FailureKind.INSERTED,
                          f"record {prev.record.id} was inserted: the next record was sealed at "
                          f"seq {prev.record.seq} directly after seq {prev.record.seq - 1}",
                          rank=prev.rank, layer=0, record=prev.record, archive=prev.origin)
                explained_link.add(r.seq)
                return -1
            self.fail(FailureKind.REORDERED,
                      f"{r.id} was sealed at seq {r.seq - 1}, not {r.seq}", record=r, **common)
            return 0
        self.fail(FailureKind.ALTERED,
                  "record hash does not match its content (record changed after sealing)",
                  record=r, **common)
        return 0

    def _diagnose_link(
        self,
        entry: _Entry,
        prev: _Entry,
        prev_prev: _Entry | None,
        hashes: dict[bytes, _Entry],
    ) -> None:
        r, p = entry.record, prev.record
        if prev_prev is not None and r.prev_hash == prev_prev.record.record_hash:
            self.fail(FailureKind.INSERTED,
                      f"record {p.id} was inserted: the next record (seq {r.seq}) links past "
                      f"it to seq {prev_prev.record.seq}",
                      rank=prev.rank, layer=0, record=p, archive=prev.origin)
        elif r.prev_hash in hashes:
            other = hashes[r.prev_hash].record
            self.fail(FailureKind.REORDERED,
                      f"record links to seq {other.seq}, not to seq {p.seq}",
                      rank=entry.rank, layer=0, record=r, archive=entry.origin)
        elif p.hash_ok():
            self.fail(FailureKind.ALTERED,
                      f"seq {r.seq} does not link to this record: it was replaced by a record "
                      "with a recomputed hash, or a record after it was removed and the rest "
                      "renumbered", rank=prev.rank, layer=0, record=p, archive=prev.origin)

    # ----- stamps ------------------------------------------------------------------------
    def _check_batch_roots(
        self, chain_id: str, ordered: list[_Entry], hash_ok_of: dict[int, bool]
    ) -> None:
        """Catch a batch whose root (and token) were swapped although its records are intact.

        When every record of a batch is present, hashes correctly, and the
        stored proofs all lead to the same root as the records do, the records
        are what was stamped and only the batch's root differs: that is a
        token problem, not a record one.
        """
        by_seq = {e.record.seq: e for e in ordered}
        for batch in self.by_chain.get(chain_id, ()):
            entries = [by_seq.get(s) for s in range(batch.first_seq, batch.last_seq + 1)]
            records = [e.record if e is not None else None for e in entries]
            present = [r for r in records if r is not None]
            if len(present) != batch.size or not all(hash_ok_of[id(r)] for r in present):
                continue
            actual = merkle_root([r.record_hash for r in present])
            if actual == batch.root:
                self.batch_whole.add(batch.batch_id)
                continue
            implied = {
                root_from_proof(r.record_hash, r.seq - batch.first_seq, batch.size, p.path)
                for r in present
                for p in self.proofs.get((batch.batch_id, r.seq - batch.first_seq), ())
            }
            if implied == {actual}:
                self.batch_root_bad.add(batch.batch_id)
                self.fail(FailureKind.BAD_TOKEN,
                          f"batch {batch.batch_id} root {batch.root.hex()} is not the root of "
                          f"its records ({actual.hex()}): root and token were replaced",
                          rank=by_seq[batch.first_seq].rank, layer=1, chain_id=chain_id,
                          seq=batch.first_seq, batch_id=batch.batch_id)

    def _check_stamp(
        self,
        entry: _Entry,
        nxt: LogRecord | None,
        hash_ok: bool,
        stamp_run: int | None,
        unstamped_run: int | None,
    ) -> tuple[int | None, int | None]:
        """Check the record's Merkle proof; returns the open (stamp, unstamped) failure runs."""
        r = entry.record
        common: dict[str, Any] = {"rank": entry.rank, "layer": 1, "archive": entry.origin}
        batch = self._batch_for(r.chain_id, r.seq)
        if batch is None:
            late = r.time < self.as_of - self.options.unstamped_grace
            if not (entry.strict or late):
                return stamp_run, None
            if self.extend_run(unstamped_run, r):
                return stamp_run, unstamped_run
            self.fail(FailureKind.UNSTAMPED,
                      "not covered by any time-stamped batch"
                      + ("" if entry.strict else
                         f" (older than the {self.options.unstamped_grace} grace period)"),
                      record=r, **common)
            return stamp_run, len(self._failures) - 1
        if batch.batch_id in self.batch_root_bad or not self.batch_ok.get(batch.batch_id):
            return stamp_run, None  # reported once, as bad_token, for the whole batch
        if not hash_ok:
            return stamp_run, None  # already reported; its proof fails as a consequence
        self.checked["proofs"] += 1
        if batch.batch_id in self.batch_whole:
            return None, None  # the root recomputes from the records themselves
        proofs = self.proofs.get((batch.batch_id, r.seq - batch.first_seq), [])
        if any(check_proof(batch, r.record_hash, p) for p in proofs):
            return None, None
        if not proofs:
            if self.extend_run(unstamped_run, r):
                return stamp_run, unstamped_run
            self.fail(FailureKind.UNSTAMPED,
                      f"no Merkle proof links it to batch {batch.batch_id}",
                      record=r, batch_id=batch.batch_id, **common)
            return stamp_run, len(self._failures) - 1
        if self.extend_run(stamp_run, r):
            return stamp_run, None
        kind, message = self._diagnose_stamp(r, nxt)
        self.fail(kind, message + f" (Merkle proof fails against batch {batch.batch_id})",
                  record=r, batch_id=batch.batch_id, **common)
        return len(self._failures) - 1, None

    def _diagnose_stamp(self, r: LogRecord, nxt: LogRecord | None) -> tuple[FailureKind, str]:
        """A record that hashes and links correctly, but is not what was stamped here.

        The chain was recomputed from this record on. The stamps still say what
        the original records were, so test the rewrites that can be recognised
        from them: this record pushed in before the original (insert), or
        swapped with the next. A deletion followed by renumbering and rehashing
        cannot be told from an edit: the deleted record's hash would be needed
        as the next one's ``prev_hash``, and the audit paths only hold
        ``leaf_hash`` values of it, not the hash itself; it is reported as altered.
        """
        chain = r.chain_id
        if nxt is not None and nxt.seq == r.seq + 1:
            original_here = _as_seq(nxt, r.seq, r.prev_hash)
            if self._stamped_at(original_here, chain, r.seq):
                if self._stamped_at(_as_seq(r, r.seq + 1, original_here), chain, r.seq + 1):
                    return FailureKind.REORDERED, (
                        f"records seq {r.seq} and {r.seq + 1} were swapped and the chain "
                        "recomputed"
                    )
                return FailureKind.INSERTED, (
                    "record was inserted and the chain recomputed after it: the stamped "
                    f"record at seq {r.seq} is the one now at seq {r.seq + 1}"
                )
        return FailureKind.ALTERED, (
            "record hashes and links correctly but is not the record stamped at this seq: "
            "it was changed (or one before it removed) and the chain recomputed"
        )

    # ----- signatures --------------------------------------------------------------------
    def _check_signature(self, entry: _Entry) -> None:
        r = entry.record
        if r.signature is None or r.signed_digest is None:
            return
        self.checked["signatures"] += 1
        problem = self._signature_problem(r)
        if problem is not None:
            self.fail(FailureKind.BAD_SIGNATURE, problem, rank=entry.rank, layer=2, record=r,
                      archive=entry.origin)

    def _signature_problem(self, r: LogRecord) -> str | None:
        assert r.signature is not None and r.signed_digest is not None
        try:
            signer = self.sig_verifier.verify(r.signature, r.signed_digest)
        except SignatureError as first:
            try:  # archives/other producers may use signed attributes
                signer = verify_detached(r.signature, r.signed_digest).signer
            except CMSError:
                return f"message signature does not verify over signed_digest: {first}"
        signer_sha = cert_sha256(signer)
        if r.signer_cert_sha256 is not None and signer_sha != r.signer_cert_sha256:
            return "signature was made by another certificate than signer_cert_sha256 names"
        chain_problem = self._chain_problem(signer, signer_sha, r.time)
        if chain_problem is not None:
            return chain_problem
        if r.ocsp_sha256 is not None and self.options.check_ocsp:
            return self._ocsp_problem(r, signer, signer_sha)
        return None

    def _chain_problem(
        self, signer: x509.Certificate, signer_sha: bytes, when: dt.datetime
    ) -> str | None:
        """The signer's chain judged at the record's own time.

        A verified path is cached with the interval in which every certificate on
        it is valid; a record inside it needs no new path building, any other one
        is judged afresh (a cache by calendar hour let a record signed after the
        certificate expired pass on the verdict of an earlier one).
        """
        window = self._chain_windows.get(signer_sha)
        if window is not None and window.covers(when):
            return None
        try:
            path = verify_chain(signer, self.anchors.ca_certs, self.intermediates, at=when)
        except ChainError as exc:
            return f"signer certificate not trusted at {when}: {exc}"
        self._chain_windows[signer_sha] = _Window.of_certificates(path)
        self._issuers[signer_sha] = path[1]
        return None

    def _ocsp_problem(
        self, r: LogRecord, signer: x509.Certificate, signer_sha: bytes
    ) -> str | None:
        """The staple judged at the record's own time.

        A response that verified is cached with the interval in which it is fresh
        (``thisUpdate`` minus the clock skew up to ``thisUpdate`` + the maximum age
        and ``nextUpdate``, within its delegated signer's validity); a record
        outside that interval is validated afresh, so every record signed after
        the staple went stale is a finding, not only those of a later minute.
        """
        assert r.ocsp_sha256 is not None
        key = (r.ocsp_sha256, signer_sha)
        known = self._staples.get(key)
        if known is not None and known[0].covers(r.time):
            return _status_problem(known[1], r.time)
        der = self.ocsp.get(r.ocsp_sha256)
        if der is None:
            return f"OCSP response {r.ocsp_sha256.hex()} named by the record is not in the evidence"
        issuer = self._issuers.get(signer_sha)
        if issuer is None:
            return "cannot find the issuer of the signer certificate to check its OCSP response"
        try:
            status = validate_response(
                der, signer, issuer, now=r.time, max_age=self.options.ocsp_max_age
            )
        except OCSPError as exc:
            return f"OCSP response does not prove the signer's status at {r.time}: {exc}"
        self._staples[key] = (_staple_window(der, status, issuer, self.options.ocsp_max_age),
                              status.status)
        return _status_problem(status.status, r.time)

    # ----- bundles -----------------------------------------------------------------------
    def _check_bundle(self, bundle: LoadedArchive, rank: int) -> None:
        """An exchange's records on their own: each hashes, links where adjacent, is stamped."""
        records = sorted(bundle.evidence.records, key=lambda r: (r.chain_id, r.seq))
        previous: LogRecord | None = None
        for r in records:
            entry = _Entry(r, bundle.label, rank, False)
            self.checked["records"] += 1
            self.checked["hashes"] += 1
            hash_ok = r.hash_ok()
            if not hash_ok:
                self.fail(FailureKind.ALTERED,
                          "record hash does not match its content (record changed after sealing)",
                          rank=rank, layer=0, record=r, archive=bundle.label)
            if r.body is not None:
                self.checked["bodies"] += 1
                if not r.body_ok():
                    self.fail(FailureKind.ALTERED,
                              "body does not match body_sha256/body_size (body changed)",
                              rank=rank, layer=0, record=r, archive=bundle.label)
            if previous is not None and previous.chain_id == r.chain_id:
                if previous.seq == r.seq:
                    self.fail(FailureKind.INSERTED, f"a second record with seq {r.seq}",
                              rank=rank, layer=0, record=r, archive=bundle.label)
                elif previous.seq + 1 == r.seq:
                    self.checked["links"] += 1
                    if r.prev_hash != previous.record_hash:
                        self.fail(FailureKind.ALTERED,
                                  f"does not link to seq {previous.seq} in the bundle",
                                  rank=rank, layer=0, record=r, archive=bundle.label)
            self._check_stamp(entry, None, hash_ok, None, None)
            self._check_signature(entry)
            previous = r
        self.report.chains.setdefault(
            f"bundle:{bundle.manifest.archive_id}", {"records": len(records)}
        )
