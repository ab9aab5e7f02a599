"""What the offline verifier answers, and what the auditor gives it to judge by.

The report types are their own module because more than the verifier reads
them: ``secnode log verify`` prints a :class:`VerificationReport`, the node's
audit job turns :class:`Failure` values into alerts, and the trust loader
builds :class:`TrustAnchors`; none of those need the checks themselves.

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
"""

from __future__ import annotations

import datetime as dt
import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

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
    unstamped: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per chain, the records no batch covers yet: ``records``, ``first_seq`` and ``since``
    (the oldest one's time). Within the grace period that is no failure, but nothing but
    the peer's witness (``secnode log reconcile``) yet proves those records existed."""

    def note_unstamped(self, chain_id: str, seq: int, time: dt.datetime) -> None:
        tail = self.unstamped.get(chain_id)
        if tail is None:
            self.unstamped[chain_id] = {
                "records": 1,
                "first_seq": seq,
                "since": time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
            return
        tail["records"] += 1
        if seq < tail["first_seq"]:
            tail["first_seq"] = seq
            tail["since"] = time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def unstamped_text(self) -> str:
        """The unstamped tail in words (what an OK does not cover yet)."""
        if not self.unstamped:
            return "every record is time-stamped"
        count = sum(t["records"] for t in self.unstamped.values())
        since = min(t["since"] for t in self.unstamped.values())
        chains = len(self.unstamped)
        return (
            f"{count} record(s) not yet time-stamped, the oldest from {since} "
            f"({chains} chain(s)); only the peer's witness proves them until stamped"
        )

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
            "unstamped": self.unstamped,
        }

    def summary(self) -> str:
        """One line for humans: the verdict and the first failure."""
        records = self.checked.get("records", 0)
        if self.ok:
            return (
                f"OK: {records} records, {self.checked.get('batches', 0)} batches verified; "
                + self.unstamped_text()
            )
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
