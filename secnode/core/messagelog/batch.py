"""Stamped batches: one RFC 3161 token over the Merkle root of a seq range of one chain.

A batch is always a *contiguous* range ``first_seq..last_seq`` of a single
chain, so the leaf index of a record is ``seq - first_seq`` and the tree size
is the range length: neither can be chosen by whoever hands over a proof. The
token's message imprint is the raw 32-byte root (SHA-256), so
``openssl ts -verify -digest <root hex> -in token.tst`` checks it directly.

The store keeps, per batch, the token and the proofs computed at stamping
time (or the leaf hashes they are derived from). Proofs must come from the
stamping-time tree, never be recomputed from the records at export time:
recomputed proofs would faithfully cover a rewritten log and the verifier
could then only say "this batch's token does not match", not which record.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from secnode.core.jsonfmt import (
    FormatError,
    b64,
    from_b64,
    from_hex32,
    get_int,
    get_opt_str,
    get_str,
    hex32,
    require_keys,
)
from secnode.core.messagelog.merkle import inclusion_proofs, merkle_root, verify_inclusion
from secnode.core.messagelog.record import LogRecord

_BATCH_ID = re.compile(r"^[A-Za-z0-9._:/#=+@-]{1,250}$")
HASH_NAME = "sha256"


class BatchError(FormatError):
    """A batch or proof is malformed, or records do not form a batch."""


def batch_id_for(chain_id: str, first_seq: int, last_seq: int) -> str:
    """The conventional batch id: unique per chain range and readable in reports."""
    return f"{chain_id}@{first_seq}-{last_seq}"


@dataclass(frozen=True)
class StampedBatch:
    """A time-stamped Merkle root over records ``first_seq..last_seq`` of ``chain_id``."""

    batch_id: str
    chain_id: str
    first_seq: int
    last_seq: int
    root: bytes
    token: bytes
    tsa_name: str
    tsa_url: str | None = None

    def __post_init__(self) -> None:
        if not _BATCH_ID.match(self.batch_id):
            raise BatchError(f"batch id {self.batch_id!r} must match {_BATCH_ID.pattern}")
        if not 1 <= self.first_seq <= self.last_seq:
            raise BatchError(f"batch {self.batch_id}: need 1 <= first_seq <= last_seq")
        if len(self.root) != 32:
            raise BatchError(f"batch {self.batch_id}: root must be 32 bytes")
        if not self.token:
            raise BatchError(f"batch {self.batch_id}: empty time-stamp token")

    @property
    def size(self) -> int:
        return self.last_seq - self.first_seq + 1

    def covers(self, chain_id: str, seq: int) -> bool:
        return chain_id == self.chain_id and self.first_seq <= seq <= self.last_seq

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "chain_id": self.chain_id,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "hash": HASH_NAME,
            "root": hex32(self.root),
            "token": b64(self.token),
            "tsa_name": self.tsa_name,
            "tsa_url": self.tsa_url,
        }

    @classmethod
    def from_json(cls, obj: Any) -> StampedBatch:
        what = "batch"
        if not isinstance(obj, dict):
            raise BatchError("batch: expected an object")
        require_keys(obj, _BATCH_KEYS, what)
        what = f"batch {obj['batch_id']!r}"
        if obj["hash"] != HASH_NAME:
            raise BatchError(f"{what}: unsupported hash {obj['hash']!r}")
        return cls(
            batch_id=get_str(obj, "batch_id", what),
            chain_id=get_str(obj, "chain_id", what),
            first_seq=get_int(obj, "first_seq", what),
            last_seq=get_int(obj, "last_seq", what),
            root=from_hex32(obj["root"], f"{what}: root"),
            token=from_b64(obj["token"], f"{what}: token"),
            tsa_name=get_str(obj, "tsa_name", what),
            tsa_url=get_opt_str(obj, "tsa_url", what),
        )


@dataclass(frozen=True)
class RecordProof:
    """The audit path linking record ``seq`` to its batch's root (leaf ``index``)."""

    batch_id: str
    seq: int
    index: int
    path: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "seq": self.seq,
            "index": self.index,
            "path": [hex32(p) for p in self.path],
        }

    @classmethod
    def from_json(cls, obj: Any) -> RecordProof:
        if not isinstance(obj, dict):
            raise BatchError("proof: expected an object")
        require_keys(obj, _PROOF_KEYS, "proof")
        what = f"proof for {obj['batch_id']!r} seq {obj['seq']!r}"
        path = obj["path"]
        if not isinstance(path, list) or len(path) > 64:
            raise BatchError(f"{what}: path must be a list of at most 64 hashes")
        return cls(
            batch_id=get_str(obj, "batch_id", what),
            seq=get_int(obj, "seq", what),
            index=get_int(obj, "index", what),
            path=tuple(from_hex32(p, f"{what}: path") for p in path),
        )


def check_proof(batch: StampedBatch, record_hash: bytes, proof: RecordProof) -> bool:
    """True when ``proof`` shows ``record_hash`` at its seq's position under ``batch.root``.

    The index is not taken from the proof but from the seq: a proof whose
    index disagrees with ``seq - first_seq`` is refused.
    """
    if proof.batch_id != batch.batch_id or not batch.first_seq <= proof.seq <= batch.last_seq:
        return False
    if proof.index != proof.seq - batch.first_seq:
        return False
    return verify_inclusion(record_hash, proof.index, batch.size, proof.path, batch.root)


@dataclass(frozen=True)
class PreparedBatch:
    """A batch before its token exists: what the stamper sends to the TSA (``root``)."""

    chain_id: str
    first_seq: int
    last_seq: int
    root: bytes
    paths: tuple[tuple[bytes, ...], ...]

    @property
    def batch_id(self) -> str:
        return batch_id_for(self.chain_id, self.first_seq, self.last_seq)

    def stamped(self, token: bytes, tsa_name: str, tsa_url: str | None = None) -> StampedBatch:
        return StampedBatch(
            batch_id=self.batch_id,
            chain_id=self.chain_id,
            first_seq=self.first_seq,
            last_seq=self.last_seq,
            root=self.root,
            token=token,
            tsa_name=tsa_name,
            tsa_url=tsa_url,
        )

    def proofs(self) -> list[RecordProof]:
        return [
            RecordProof(self.batch_id, self.first_seq + i, i, path)
            for i, path in enumerate(self.paths)
        ]


def prepare_batch(records: Sequence[LogRecord]) -> PreparedBatch:
    """Merkle root and proofs over ``records``: one chain, contiguous seqs, in order."""
    if not records:
        raise BatchError("a batch needs at least one record")
    chain_id = records[0].chain_id
    first = records[0].seq
    for offset, record in enumerate(records):
        if record.chain_id != chain_id:
            raise BatchError("a batch covers one chain only")
        if record.seq != first + offset:
            raise BatchError(
                f"batch records must have contiguous seqs: expected {first + offset}, "
                f"got {record.seq}"
            )
    root, paths = inclusion_proofs([r.record_hash for r in records])
    return PreparedBatch(chain_id, first, records[-1].seq, root, tuple(tuple(p) for p in paths))


def proofs_from_leaves(batch: StampedBatch, leaves: Sequence[bytes]) -> list[RecordProof]:
    """Proofs for ``batch`` from the leaf hashes kept at stamping time (must match the root)."""
    if len(leaves) != batch.size:
        raise BatchError(f"batch {batch.batch_id}: {len(leaves)} leaves for size {batch.size}")
    if merkle_root(leaves) != batch.root:
        raise BatchError(f"batch {batch.batch_id}: leaves do not hash to the batch root")
    _, paths = inclusion_proofs(leaves)
    return [
        RecordProof(batch.batch_id, batch.first_seq + i, i, tuple(p)) for i, p in enumerate(paths)
    ]


_BATCH_KEYS = frozenset(
    {
        "batch_id",
        "chain_id",
        "first_seq",
        "last_seq",
        "hash",
        "root",
        "token",
        "tsa_name",
        "tsa_url",
    }
)
_PROOF_KEYS = frozenset({"batch_id", "seq", "index", "path"})
