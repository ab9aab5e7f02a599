"""Log positions one node hands the other, so each side's log witnesses the peer's.

An insider can drop a node's newest records before they are time-stamped and the
node's own log still verifies. To make that provable, each node tells its peer
where it logged the message, and the peer keeps that in its own record:

* the provider node's signed response names its ``request_in`` record (chain id,
  seq, record hash), bound by the response signature (``response_digest``);
* the client node names its ``request_out`` record. That record holds the request
  signature, so its hash exists only after the request was signed and the record
  made durable; the client node therefore signs the position separately (a raw
  signature with the same sign key, over :func:`request_witness_digest`, which
  binds the request digest).

``secnode log reconcile`` (:mod:`secnode.core.messagelog.reconcile`) then checks
each log against the positions the other one witnessed. Wire form and rules:
``docs/protocol.md`` §4.1; the auditor's reading: ``docs/audit.md``.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass
from typing import Any, Final

from secnode.core.jsonfmt import FormatError, b64, from_b64, from_hex32

WITNESS_DOMAIN: Final = b"secnode/request-witness/v1"
MAX_WITNESS_TEXT: Final = 2048
MAX_SIGNATURE_BYTES: Final = 1024

_CHAIN_ID: Final = re.compile(r"^[A-Za-z0-9._:/#=+-]{1,200}$")


class WitnessError(ValueError):
    """A log position (or its signature) that is missing fields or malformed."""


@dataclass(frozen=True, slots=True)
class LogPosition:
    """Where one node logged a message: its record ``chain_id#seq`` with ``record_hash``."""

    chain_id: str
    seq: int
    record_hash: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.chain_id, str) or not _CHAIN_ID.match(self.chain_id):
            raise WitnessError("log position: chain_id is malformed")
        if (
            isinstance(self.seq, bool)
            or not isinstance(self.seq, int)
            or not 1 <= self.seq <= 2**53 - 1
        ):
            raise WitnessError("log position: seq must be a positive integer")
        if not isinstance(self.record_hash, bytes) or len(self.record_hash) != 32:
            raise WitnessError("log position: record_hash must be 32 bytes")

    @property
    def ref(self) -> str:
        return f"{self.chain_id}#{self.seq}"

    def to_json(self) -> dict[str, Any]:
        return {"chain_id": self.chain_id, "record_hash": self.record_hash.hex(), "seq": self.seq}

    def encode(self) -> str:
        """Compact JSON with sorted keys (what is signed and what the peer records)."""
        return _compact(self.to_json())

    @classmethod
    def from_json(cls, obj: object) -> LogPosition:
        if not isinstance(obj, dict):
            raise WitnessError("log position is not a JSON object")
        try:
            return cls(obj["chain_id"], obj["seq"], from_hex32(obj["record_hash"], "record_hash"))
        except (KeyError, FormatError) as exc:
            raise WitnessError(f"log position: {exc}") from exc

    @classmethod
    def decode(cls, text: str) -> LogPosition:
        obj = _load(text)
        if set(obj) != {"chain_id", "record_hash", "seq"}:
            raise WitnessError("log position: expected exactly chain_id, record_hash, seq")
        return cls.from_json(obj)


def request_witness_digest(request_digest: bytes, position: LogPosition) -> bytes:
    """What the client node signs for its ``request_out`` position: SHA-256 over the domain,
    the request digest and the position (length-prefixed, as ``docs/protocol.md`` §4.1)."""
    if not isinstance(request_digest, bytes) or len(request_digest) != 32:
        raise WitnessError("request digest must be 32 bytes")
    chain = position.chain_id.encode("utf-8")
    data = b"".join(
        (
            struct.pack(">B", len(WITNESS_DOMAIN)),
            WITNESS_DOMAIN,
            request_digest,
            struct.pack(">I", len(chain)),
            chain,
            struct.pack(">Q", position.seq),
            position.record_hash,
        )
    )
    return hashlib.sha256(data).digest()


@dataclass(frozen=True, slots=True)
class RequestWitness:
    """The client node's signed ``request_out`` position (signature: raw, by the key of
    the request's signer certificate)."""

    position: LogPosition
    signature: bytes

    def encode(self) -> str:
        return _compact({**self.position.to_json(), "signature": b64(self.signature)})

    @classmethod
    def decode(cls, text: str) -> RequestWitness:
        obj = _load(text)
        if set(obj) != {"chain_id", "record_hash", "seq", "signature"}:
            raise WitnessError(
                "request witness: expected exactly chain_id, record_hash, seq, signature"
            )
        try:
            signature = from_b64(obj.pop("signature"), "signature")
        except FormatError as exc:
            raise WitnessError(f"request witness: {exc}") from exc
        if not 0 < len(signature) <= MAX_SIGNATURE_BYTES:
            raise WitnessError("request witness: signature has an impossible length")
        return cls(LogPosition.from_json(obj), signature)


def witnessed_position(text: str) -> LogPosition:
    """The position in a record's ``witness`` field (either form above)."""
    obj = _load(text)
    obj.pop("signature", None)
    if set(obj) != {"chain_id", "record_hash", "seq"}:
        raise WitnessError("witness: expected chain_id, record_hash, seq")
    return LogPosition.from_json(obj)


def _compact(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _load(text: str) -> dict[str, Any]:
    if not isinstance(text, str) or not 0 < len(text) <= MAX_WITNESS_TEXT:
        raise WitnessError("witness text is empty or too long")
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise WitnessError(f"witness is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise WitnessError("witness is not a JSON object")
    return obj
