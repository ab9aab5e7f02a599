"""Archives judged offline: their sequence, and each one's signed manifest.

Archives form a chain of their own (each manifest names the previous
archive's hash), and each is a signed container whose manifest declares its
files, record count, seq and time range. These checks are about the
containers, not the records inside them (the chain checks handle those);
the verifier runs them first because a missing archive explains the gap in
the records that follows it.
"""

from __future__ import annotations

from typing import Protocol

from cryptography import x509

from certs.chain import ChainError, verify_chain
from certs.cms import CMSError, verify_detached
from certs.profiles import ProfileError
from secnode.core.cert_member import member_id_of
from secnode.core.identifiers import IdentifierError, NodeId
from secnode.core.jsonfmt import cert_sha256
from secnode.core.messagelog.archive import (
    MANIFEST_NAME,
    RECORDS_NAME,
    SIGNATURE_NAME,
    ArchiveKind,
    LoadedArchive,
)
from secnode.core.messagelog.findings import INF, Findings
from secnode.core.messagelog.report import FailureKind, TrustAnchors, VerifyOptions


class _Problem(Protocol):
    """Reports one manifest problem (see :meth:`ArchiveCheck.check_manifest`)."""

    def __call__(self, message: str, order_seq: int = -1) -> None: ...


class ArchiveCheck:
    """Checks the archive sequence and each archive's manifest."""

    def __init__(
        self,
        findings: Findings,
        anchors: TrustAnchors,
        options: VerifyOptions,
        intermediates: list[x509.Certificate],
    ) -> None:
        self.fail = findings.fail
        self.note = findings.note
        self.checked = findings.checked
        self.anchors = anchors
        self.options = options
        self.intermediates = intermediates

    def check_sequence(self, archives: list[LoadedArchive]) -> set[int]:
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
                            archive,
                            rank,
                        )
                    elif self.options.complete:
                        holes.add(rank)
                        self._fail_archive_chain(
                            f"archives 1..{(m.sequence or 1) - 1} before {where} are missing",
                            archive,
                            rank,
                        )
                    else:
                        holes.add(rank)
                        self.note(f"archives before {where} were not supplied")
            else:
                pm = previous.manifest
                if m.sequence == pm.sequence:
                    self._fail_archive_chain(
                        f"{where} and archive {pm.archive_id} claim the same sequence number",
                        archive,
                        rank,
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
                        archive,
                        rank,
                    )
                elif m.sequence != (pm.sequence or 0) + 1:
                    self._fail_archive_chain(
                        f"{where} follows sequence {pm.sequence} (sequence numbers skip)",
                        archive,
                        rank,
                    )
            previous = archive
        return holes

    def _fail_archive_chain(self, message: str, archive: LoadedArchive, rank: int) -> None:
        m = archive.manifest
        self.fail(
            FailureKind.ARCHIVE_CHAIN,
            message,
            rank=rank,
            layer=-1,
            chain_id=m.chain_id,
            seq=m.first_seq,
            order_seq=-1,
            archive=archive.label,
        )

    def check_manifest(self, archive: LoadedArchive, rank: int) -> None:
        """The manifest's signature, the files it lists and the ranges it declares."""
        m = archive.manifest
        self.checked["manifests"] += 1

        def problem(message: str, order_seq: int = -1) -> None:
            self.fail(
                FailureKind.MANIFEST,
                f"{archive.label}: {message}",
                rank=rank,
                layer=0,
                chain_id=m.chain_id,
                seq=m.first_seq,
                order_seq=order_seq,
                archive=archive.label,
            )

        self._check_signer(archive, problem)
        self._check_files(archive, problem)
        self._check_declared(archive, rank, problem)

    def _check_signer(self, archive: LoadedArchive, problem: _Problem) -> None:
        """``manifest.sig`` verifies, by the named certificate of the archiving node's member."""
        m = archive.manifest
        try:
            verified = verify_detached(archive.signature, archive.manifest_bytes)
        except CMSError as exc:
            problem(f"manifest signature does not verify: {exc}")
            return
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

    @staticmethod
    def _check_files(archive: LoadedArchive, problem: _Problem) -> None:
        """The container holds exactly the files the manifest lists, with their hashes
        (computed while it was read: a ``bodies/`` entry is not held in memory)."""
        m = archive.manifest
        for name, digest in archive.digests.items():
            if name in (MANIFEST_NAME, SIGNATURE_NAME):
                continue
            expected = m.files.get(name)
            if expected is None:
                problem(f"{name} is not listed in the manifest")
            elif digest != expected:
                # Placed after the archive's records: a record found altered inside is
                # the more precise report and comes first.
                problem(
                    f"SHA-256 of {name} differs from the manifest",
                    order_seq=INF if name == RECORDS_NAME else -1,
                )
        for name in m.files:
            if name not in archive.digests:
                problem(f"{name} is listed in the manifest but absent")

    def _check_declared(self, archive: LoadedArchive, rank: int, problem: _Problem) -> None:
        """The record count, chain, node, seq and time ranges the manifest declares."""
        m = archive.manifest
        records = archive.evidence.records
        if len(records) != m.record_count:
            problem(
                f"manifest declares {m.record_count} records, archive holds {len(records)}",
                order_seq=INF,
            )
        if records and m.kind is ArchiveKind.ARCHIVE:
            if {r.chain_id for r in records} != {m.chain_id}:
                problem(f"records are not all of chain {m.chain_id}")
            if {r.node_id for r in records} != {m.node_id}:
                problem(f"records are not all of node {m.node_id}")
            first, last = records[0].seq, records[-1].seq
            if m.first_seq is not None and first > m.first_seq:
                self.fail(
                    FailureKind.MISSING,
                    f"archive {archive.label} declares seqs from {m.first_seq} but its "
                    f"records start at {first}",
                    rank=rank,
                    layer=0,
                    chain_id=m.chain_id,
                    seq=m.first_seq,
                    archive=archive.label,
                )
            if m.last_seq is not None and last < m.last_seq:
                self.fail(
                    FailureKind.MISSING,
                    f"archive {archive.label} declares seqs up to {m.last_seq} but its "
                    f"records end at {last}",
                    rank=rank,
                    layer=0,
                    chain_id=m.chain_id,
                    seq=last + 1,
                    archive=archive.label,
                )
        if (
            records
            and m.kind is ArchiveKind.ARCHIVE
            and (
                m.first_time != min(r.time for r in records)
                or m.last_time != max(r.time for r in records)
            )
        ):
            problem("declared time range differs from the records'", order_seq=INF)
