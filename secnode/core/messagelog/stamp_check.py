"""Time-stamp coverage judged offline: batches, their RFC 3161 tokens and Merkle proofs.

A record is stamped when a batch covering its seq carries a token that
verifies over the batch's Merkle root and a proof links the record to that
root. The stamps are also the verifier's memory of what the records
originally were: after a chain was recomputed from a forged record on,
:meth:`Stamps.diagnose` tells an insertion or a swap from an edit by testing
which rewrite the stored proofs still recognise. Kept apart from the chain
checks because it owns the batch index every record is looked up in.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from cryptography import x509

from certs.names import display_name
from certs.tsa_verify import verify_token
from secnode.core.messagelog.archive import LogEvidence
from secnode.core.messagelog.batch import RecordProof, StampedBatch, check_proof
from secnode.core.messagelog.findings import Entry, Findings, as_seq
from secnode.core.messagelog.merkle import merkle_root, root_from_proof
from secnode.core.messagelog.record import LogRecord
from secnode.core.messagelog.report import FailureKind, TrustAnchors, VerifyOptions

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
                f"token signed by {display_name(info.tsa_cert.subject)}, "
                "which is not an approved TSA"
            )
        return info.gen_time

    return check


class Stamps:
    """The batches and proofs of all the evidence, and the checks made against them."""

    def __init__(
        self,
        findings: Findings,
        options: VerifyOptions,
        as_of: dt.datetime,
        token_check: TokenCheck,
        intermediates: list[x509.Certificate],
    ) -> None:
        self.fail = findings.fail
        self.report = findings.report
        self.extend_run = findings.extend_run
        self.checked = findings.checked
        self.options = options
        self.as_of = as_of
        self.token_check = token_check
        self.intermediates = intermediates
        self.batches: dict[str, StampedBatch] = {}
        self.batch_ok: dict[str, bool] = {}
        self.batch_root_bad: set[str] = set()
        self.batch_whole: set[str] = set()  # every record present and hashing to the root
        self.by_chain: dict[str, list[StampedBatch]] = defaultdict(list)
        self.proofs: dict[tuple[str, int], list[RecordProof]] = defaultdict(list)
        self._batch_index: dict[str, tuple[list[int], list[StampedBatch]]] = {}
        self._batch_rank: dict[str, tuple[int, str]] = {}
        self._overlaps: set[tuple[str, str]] = set()

    def add(self, evidence: LogEvidence, rank: int, origin: str) -> None:
        for batch in evidence.batches:
            known = self.batches.get(batch.batch_id)
            if known is not None:
                if known != batch:
                    self.fail(
                        FailureKind.BAD_TOKEN,
                        f"two different batches carry the id {batch.batch_id} ({origin})",
                        rank=rank,
                        layer=1,
                        chain_id=batch.chain_id,
                        seq=batch.first_seq,
                        batch_id=batch.batch_id,
                        archive=origin,
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

    def check_overlaps(self) -> None:
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
                            rank=rank,
                            layer=1,
                            chain_id=chain_id,
                            seq=batch.first_seq,
                            batch_id=batch.batch_id,
                            archive=origin,
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
                rank=rank,
                layer=1,
                chain_id=batch.chain_id,
                seq=batch.first_seq,
                batch_id=batch.batch_id,
                archive=origin,
            )
        else:
            self.batch_ok[batch.batch_id] = True

    def batch_for(self, chain_id: str, seq: int) -> StampedBatch | None:
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

    def stamped_at(self, leaf: bytes, chain_id: str, seq: int) -> bool:
        """Whether ``leaf`` is what was stamped at ``chain_id#seq`` (per the stored proofs)."""
        batch = self.batch_for(chain_id, seq)
        if batch is None:
            return False
        return any(
            check_proof(batch, leaf, proof)
            for proof in self.proofs.get((batch.batch_id, seq - batch.first_seq), ())
        )

    def check_batch_roots(
        self, chain_id: str, ordered: list[Entry], hash_ok_of: dict[int, bool]
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
                self.fail(
                    FailureKind.BAD_TOKEN,
                    f"batch {batch.batch_id} root {batch.root.hex()} is not the root of "
                    f"its records ({actual.hex()}): root and token were replaced",
                    rank=by_seq[batch.first_seq].rank,
                    layer=1,
                    chain_id=chain_id,
                    seq=batch.first_seq,
                    batch_id=batch.batch_id,
                )

    def check(
        self,
        entry: Entry,
        nxt: LogRecord | None,
        hash_ok: bool,
        stamp_run: int | None,
        unstamped_run: int | None,
    ) -> tuple[int | None, int | None]:
        """Check the record's Merkle proof; returns the open (stamp, unstamped) failure runs."""
        r = entry.record
        common: dict[str, Any] = {"rank": entry.rank, "layer": 1, "archive": entry.origin}
        batch = self.batch_for(r.chain_id, r.seq)
        if batch is None:
            self.report.note_unstamped(r.chain_id, r.seq, r.time)
            late = r.time < self.as_of - self.options.unstamped_grace
            if not (entry.strict or late):
                return stamp_run, None
            if self.extend_run(unstamped_run, r):
                return stamp_run, unstamped_run
            run = self.fail(
                FailureKind.UNSTAMPED,
                "not covered by any time-stamped batch"
                + (
                    ""
                    if entry.strict
                    else f" (older than the {self.options.unstamped_grace} grace period)"
                ),
                record=r,
                **common,
            )
            return stamp_run, run
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
            run = self.fail(
                FailureKind.UNSTAMPED,
                f"no Merkle proof links it to batch {batch.batch_id}",
                record=r,
                batch_id=batch.batch_id,
                **common,
            )
            return stamp_run, run
        if self.extend_run(stamp_run, r):
            return stamp_run, None
        kind, message = self.diagnose(r, nxt)
        run = self.fail(
            kind,
            message + f" (Merkle proof fails against batch {batch.batch_id})",
            record=r,
            batch_id=batch.batch_id,
            **common,
        )
        return run, None

    def diagnose(self, r: LogRecord, nxt: LogRecord | None) -> tuple[FailureKind, str]:
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
            original_here = as_seq(nxt, r.seq, r.prev_hash)
            if self.stamped_at(original_here, chain, r.seq):
                if self.stamped_at(as_seq(r, r.seq + 1, original_here), chain, r.seq + 1):
                    return FailureKind.REORDERED, (
                        f"records seq {r.seq} and {r.seq + 1} were swapped and the chain recomputed"
                    )
                return FailureKind.INSERTED, (
                    "record was inserted and the chain recomputed after it: the stamped "
                    f"record at seq {r.seq} is the one now at seq {r.seq + 1}"
                )
        return FailureKind.ALTERED, (
            "record hashes and links correctly but is not the record stamped at this seq: "
            "it was changed (or one before it removed) and the chain recomputed"
        )
