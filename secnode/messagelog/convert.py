"""Between the message path, the log's rows and the core's :class:`LogRecord`.

:func:`draft_from_event` runs on the event loop for every message and does as
little as possible: it copies what the proxy knows into a :class:`Draft`. The
writer thread seals drafts into records (hash chain) in commit order, so the
chain's order is the order records became durable.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sqlalchemy import Row

from secnode.core.message import Body, MessageHeaders
from secnode.core.messagelog import Direction, LogRecord
from secnode.core.messagelog.record import (
    MAX_TEXT,
    RECORD_VERSION,
    CanonicalTemplate,
    HeaderTexts,
    RecordError,
    check_text,
    format_time,
    json_string,
    parse_time,
    record_hash,
)
from secnode.messagelog.bodyfiles import BODIES_DIR, BodyStore
from secnode.proxy.hooks import ExchangeEvent
from secnode.proxy.spool import Spool

EMPTY_SHA256 = hashlib.sha256(b"").digest()


#: Every MessageHeaders field, read once (the headers grow as the protocol does).
_HEADER_FIELDS = tuple(f.name for f in fields(MessageHeaders))
#: (field, '"field":') in sorted key order: the canonical JSON's keys, rendered once.
_HEADER_KEYS = tuple((name, json_string(name) + ":") for name in sorted(_HEADER_FIELDS))
_IDENTIFIER_FIELDS = frozenset({"client", "service"})


def headers_json(headers: MessageHeaders) -> str:
    """The canonical header part: ``json.dumps`` of every :class:`MessageHeaders` field
    (identifiers in their string form) with sorted keys, no whitespace, ``ensure_ascii``
    off. Rendered key by key with the json module's own string escaper (several times
    faster on the message path; a property test holds it equal to ``json.dumps``)."""
    parts = []
    for name, key in _HEADER_KEYS:
        value = getattr(headers, name)
        if name in _IDENTIFIER_FIELDS:
            value = str(value)
        elif value is not None and not isinstance(value, str):  # a future non-text field
            data = {n: getattr(headers, n) for n in _HEADER_FIELDS}
            data["client"], data["service"] = str(headers.client), str(headers.service)
            return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        parts.append(key + ("null" if value is None else json_string(value)))
    return "{" + ",".join(parts) + "}"


@functools.lru_cache(maxsize=4096)
def headers_sha256(headers: MessageHeaders) -> bytes:
    """SHA-256 of the canonical header part (``docs/audit.md`` §6.1, :func:`headers_json`).

    It binds the headers the record does not hold as fields (issue, protocol,
    policy headers beyond purpose/legal basis/data subject, REST
    method/path/query, content type) to the record. Cached: the policy
    decision and each record of a message ask for it.
    """
    return hashlib.sha256(headers_json(headers).encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class MessagePart:
    """What every record of one message takes from its headers, computed once."""

    texts: tuple[str | None, ...]  # the row's client_id .. data_subject columns
    rendered: HeaderTexts
    headers_sha256: bytes


_TEXT_NAMES = (
    "client_id",
    "service_id",
    "message_id",
    "user_id",
    "purpose",
    "legal_basis",
    "data_subject",
)


@functools.lru_cache(maxsize=4096)
def message_part(h: MessageHeaders) -> MessagePart:
    """Cached: a request and its response share one headers object, and this runs on the
    message path. Raises :class:`RecordError` for a value no record may hold."""
    texts = (
        str(h.client),
        str(h.service),
        h.message_id,
        h.user_id,
        h.purpose,
        h.legal_basis,
        h.data_subject,
    )
    for name, value in zip(_TEXT_NAMES, texts, strict=True):
        check_text(name, value)
    rendered = HeaderTexts.of(**dict(zip(_TEXT_NAMES, texts, strict=True)))
    return MessagePart(texts, rendered, headers_sha256(h))


@dataclass(slots=True)
class Draft:
    """A record before it has a place in the chain (no chain, seq, id or hashes yet).

    Everything the record's canonical bytes and row need from the message is
    rendered here, once, on the event loop (:class:`CanonicalTemplate`); the
    writer then seals it in commit order with :meth:`seal_row`, which only
    joins and hashes.
    """

    time: dt.datetime
    time_text: str
    direction: Direction
    message_id: str
    fields: tuple[Any, ...]  # the row's columns client_id .. ocsp_sha256 (RECORD_COLUMNS[7:23])
    body: Body | None  # the body as the row keeps it (None when not kept)
    template: CanonicalTemplate
    signer_cert_sha256: bytes | None
    ocsp_sha256: bytes | None
    signer_cert_der: bytes | None
    ocsp_der: bytes | None
    witness: str | None = None
    body_file: bool = False
    """The body is kept as a body file (:mod:`secnode.messagelog.bodyfiles`), not in the row."""

    def seal_row(
        self,
        chain_id: str,
        chain_json: str,
        seq: int,
        prev_hash: bytes,
        node_id: str,
        node_json: str,
        record_id: str,
    ) -> tuple[tuple[Any, ...], bytes]:
        """The ``mlog_records`` row (:data:`RECORD_COLUMNS` order) and the record hash.

        ``chain_json``/``node_json`` are the ids JSON-quoted (:func:`json_string`),
        done once per writer rather than per record.
        """
        canonical = self.template.render(chain_json, json_string(record_id), node_json, seq)
        digest = record_hash(prev_hash, canonical)
        row = (
            chain_id,
            seq,
            record_id,
            RECORD_VERSION,
            self.time_text,
            self.direction.value,
            node_id,
            *self.fields,
            prev_hash,
            digest,
            self.body,
            self.witness,
            True if self.body_file else None,
        )
        return row, digest

    def seal(
        self, chain_id: str, seq: int, prev_hash: bytes, node_id: str, record_id: str | None = None
    ) -> LogRecord:
        """The same record as a :class:`LogRecord` (validated; for tools and tests)."""
        (
            client_id,
            service_id,
            message_id,
            user_id,
            purpose,
            legal_basis,
            data_subject,
            decision,
            reason,
            body_sha256,
            body_size,
            headers_sha256,
            signed_digest,
            signature,
            signer_cert_sha256,
            ocsp_sha256,
        ) = self.fields
        return LogRecord.create(
            chain_id=chain_id,
            seq=seq,
            prev_hash=prev_hash,
            time=self.time,
            direction=self.direction,
            node_id=node_id,
            headers_sha256=headers_sha256,
            body=None if self.body is None else bytes(self.body),  # tools and tests only
            body_sha256=body_sha256,
            body_size=body_size,
            client_id=client_id,
            service_id=service_id,
            message_id=message_id,
            user_id=user_id,
            purpose=purpose,
            legal_basis=legal_basis,
            data_subject=data_subject,
            decision=decision,
            reason=reason,
            signed_digest=signed_digest,
            signature=signature,
            signer_cert_sha256=signer_cert_sha256,
            ocsp_sha256=ocsp_sha256,
            record_id=record_id,
            witness=self.witness,
        )


_DIRECTIONS = {d.value: d for d in Direction}


def _hex_or_none(text: str) -> bytes | None:
    return bytes.fromhex(text) if text else None


def _body_fields(event: ExchangeEvent) -> tuple[Body | None, bytes, int, bool]:
    """(body in memory, its SHA-256, its size, whether it is spooled to a file)."""
    if isinstance(event.body, Spool):
        spool = event.body
        in_file = not spool.in_memory
        return (None if in_file else spool.data()), spool.sha256, spool.size, in_file
    body = event.body
    if body is not None:
        if len(event.body_sha256) == 32:
            return body, event.body_sha256, len(body), False
        return body, hashlib.sha256(body).digest(), len(body), False
    if len(event.body_sha256) == 32:
        return None, event.body_sha256, int(event.extra.get("body_size", 0)), False
    return None, EMPTY_SHA256, 0, False


def draft_from_event(event: ExchangeEvent) -> Draft:
    """What the log keeps of ``event``; the body only if ``event.log_body``.

    A refusal made before the body was read carries no body digest; it is
    logged with the digest of the empty string and size 0 (``docs/audit.md``).
    Raises :class:`RecordError` for a value no record may hold (the message is
    refused, as an unloggable message must be).
    """
    h = event.headers
    body, body_sha, body_size, spooled_to_file = _body_fields(event)
    signed = bool(event.signature) and bool(event.signed_digest)
    signed_digest = event.signed_digest if signed else None
    signature = event.signature if signed else None
    signer_sha = _hex_or_none(event.signer_cert_sha256) if signed else None
    ocsp_sha = _hex_or_none(event.ocsp_sha256) if signed else None
    for name, digest in (("signer_cert_sha256", signer_sha), ("ocsp_sha256", ocsp_sha)):
        if digest is not None and len(digest) != 32:
            raise RecordError(f"{name} must be 32 bytes")
    part = message_part(h)
    decision = (event.decision or None) and event.decision[:MAX_TEXT]
    reason = (event.reason or None) and event.reason[:MAX_TEXT]
    direction = _DIRECTIONS.get(event.direction) or Direction(event.direction)
    witness = event.witness
    check_text("witness", witness)
    time_text = format_time(event.at)
    return Draft(
        time=event.at,
        time_text=time_text,
        direction=direction,
        message_id=h.message_id,
        fields=(
            *part.texts,
            decision,
            reason,
            body_sha,
            body_size,
            part.headers_sha256,
            signed_digest,
            signature,
            signer_sha,
            ocsp_sha,
        ),
        body=body if event.log_body else None,
        body_file=spooled_to_file and event.log_body,
        template=CanonicalTemplate.of(
            part.rendered,
            time_text=time_text,
            direction=direction.value,
            decision=decision,
            reason=reason,
            body_sha256=body_sha,
            body_size=body_size,
            headers_sha256=part.headers_sha256,
            signed_digest=signed_digest,
            signature=signature,
            signer_cert_sha256=signer_sha,
            ocsp_sha256=ocsp_sha,
            witness=witness,
        ),
        signer_cert_sha256=signer_sha,
        ocsp_sha256=ocsp_sha,
        signer_cert_der=event.signer_cert_der if signed else None,
        ocsp_der=event.ocsp_der if signed else None,
        witness=witness,
    )


# ----- rows ---------------------------------------------------------------------------------
#: ``mlog_records`` columns in the order of :func:`row_tuple` (the writer's INSERT).
RECORD_COLUMNS = (
    "chain_id",
    "seq",
    "record_id",
    "version",
    "time",
    "direction",
    "node_id",
    "client_id",
    "service_id",
    "message_id",
    "user_id",
    "purpose",
    "legal_basis",
    "data_subject",
    "decision",
    "reason",
    "body_sha256",
    "body_size",
    "headers_sha256",
    "signed_digest",
    "signature",
    "signer_cert_sha256",
    "ocsp_sha256",
    "prev_hash",
    "record_hash",
    "body",
    "witness",
    "body_file",
)
BODY_COLUMN = RECORD_COLUMNS.index("body")
"""Where the body is in a row: the writer takes large bodies out of the ``INSERT`` by
this index (looked up by name, so a column added after ``body`` cannot move it: the
witness column once did, and every body was bound into the statement again)."""


def row_tuple(record: LogRecord) -> tuple[Any, ...]:
    """The ``mlog_records`` row of a sealed record, in :data:`RECORD_COLUMNS` order."""
    return (
        record.chain_id,
        record.seq,
        record.id,
        1,
        format_time(record.time),
        record.direction.value,
        record.node_id,
        record.client_id,
        record.service_id,
        record.message_id,
        record.user_id,
        record.purpose,
        record.legal_basis,
        record.data_subject,
        record.decision,
        record.reason,
        record.body_sha256,
        record.body_size,
        record.headers_sha256,
        record.signed_digest,
        record.signature,
        record.signer_cert_sha256,
        record.ocsp_sha256,
        record.prev_hash,
        record.record_hash,
        record.body,
        record.witness,
        True if record.body_file else None,
    )


def row_of(record: LogRecord) -> dict[str, Any]:
    """The ``mlog_records`` row of a sealed record, as a dict (for SQLAlchemy Core)."""
    return dict(zip(RECORD_COLUMNS, row_tuple(record), strict=True))


def _b(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def record_of(row: Row[Any] | Any, bodies: BodyStore | None = None) -> LogRecord:
    """Rebuild the stored record from its row, exactly as stored (the verifier judges it).
    ``bodies``: where a record's body file is (it is named from the record's digest).

    Uses the dataclass constructor, not :meth:`LogRecord.create`: a tampered
    row must come back with its stored ``record_hash``, not a recomputed one.
    """
    m = row._mapping
    return LogRecord(
        id=m["record_id"],
        chain_id=m["chain_id"],
        seq=int(m["seq"]),
        time=parse_time(m["time"], f"record {m['chain_id']}#{m['seq']}"),
        direction=Direction(m["direction"]),
        node_id=m["node_id"],
        client_id=m["client_id"],
        service_id=m["service_id"],
        message_id=m["message_id"],
        user_id=m["user_id"],
        purpose=m["purpose"],
        legal_basis=m["legal_basis"],
        data_subject=m["data_subject"],
        decision=m["decision"],
        reason=m["reason"],
        body_sha256=bytes(m["body_sha256"]),
        body_size=int(m["body_size"]),
        headers_sha256=bytes(m["headers_sha256"]),
        signed_digest=_b(m["signed_digest"]),
        signature=_b(m["signature"]),
        signer_cert_sha256=_b(m["signer_cert_sha256"]),
        ocsp_sha256=_b(m["ocsp_sha256"]),
        prev_hash=bytes(m["prev_hash"]),
        record_hash=bytes(m["record_hash"]),
        witness=m["witness"],
        body=_b(m["body"]),
        body_file=_body_file(m, bodies),
    )


def _body_file(m: Any, bodies: BodyStore | None) -> str | None:
    if not m.get("body_file"):
        return None
    root = bodies if bodies is not None else BodyStore(Path(BODIES_DIR))
    return str(root.path(bytes(m["body_sha256"])))


def utc_text(value: dt.datetime | None = None) -> str:
    """A time in the log's canonical text form (now by default)."""
    return format_time(value or dt.datetime.now(dt.UTC))
