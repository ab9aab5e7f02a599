"""One message-log record, its canonical bytes and its place in the hash chain.

A record describes one message crossing the node (or one refusal) and is
linked to its predecessor in the same *chain*::

    record_hash = SHA-256(prev_hash || canonical_bytes(record))

where ``prev_hash`` is the previous record's ``record_hash`` (or the chain's
genesis value for ``seq`` 1) and ``canonical_bytes`` is the canonical JSON of
every field except ``prev_hash``, ``record_hash`` and ``body``. The body is
bound only through ``body_sha256`` so that a record stays verifiable after its
body is purged (or was never kept: ``messagelog.bodies = false``).

One chain belongs to one writer (a node process); the rationale is in
``docs/audit.md`` ("One chain per writer").

Why one module of this size: the record's fields, their canonical bytes and the
chain rule are one format specification; an auditor reads it in one place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import hashlib
import io
import json
import os
import re
import secrets
import zipfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from secnode.core.jsonfmt import (
    FormatError,
    b64,
    canonical_json,
    format_time_us,
    from_hex32,
    get_int,
    get_opt_int,
    get_opt_str,
    get_str,
    hex32,
    opt_from_b64,
    opt_from_hex32,
    parse_json_object,
    parse_time_us,
    require_keys,
)

RECORD_VERSION = 1
GENESIS_PREFIX = b"secnode-log-genesis\x00"

_CHAIN_ID = re.compile(r"^[A-Za-z0-9._:/#=+-]{1,200}$")
_RECORD_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: A kept body is hashed, archived and read a piece of this size at a time.
BODY_PIECE = 1024 * 1024
MAX_TEXT = 4096


class RecordError(FormatError):
    """A log record is malformed (wrong types, lengths or values)."""


class Direction(enum.StrEnum):
    """Which way the logged message went, as seen from the logging node."""

    REQUEST_IN = "request_in"
    REQUEST_OUT = "request_out"
    RESPONSE_IN = "response_in"
    RESPONSE_OUT = "response_out"
    REFUSAL = "refusal"


def genesis_hash(chain_id: str) -> bytes:
    """``prev_hash`` of a chain's first record: SHA-256("secnode-log-genesis" NUL chain_id).

    Binding the chain id into the start means a chain cannot be passed off as
    another one, and a chain that claims to start must really start at seq 1.
    """
    return hashlib.sha256(GENESIS_PREFIX + chain_id.encode("utf-8")).digest()


def new_record_id() -> str:
    """A random, unguessable record id (128 bits, hex); stable across archive and DB."""
    return secrets.token_hex(16)


def format_time(value: dt.datetime) -> str:
    """A record time: UTC with microseconds (:func:`jsonfmt.format_time_us`)."""
    if value.tzinfo is None:
        raise RecordError("record time must be timezone-aware")
    return format_time_us(value)


def parse_time(text: object, what: str) -> dt.datetime:
    try:
        return parse_time_us(text, what)
    except FormatError as exc:
        raise RecordError(str(exc)) from exc


@dataclass(frozen=True)
class BodyEntry:
    """A body kept as a container's ``bodies/<sha256>`` entry, measured when the container
    was read: the SHA-256 and size of its inflated bytes, from a streaming pass. The bytes
    stay in the container (a large body is never held whole); :meth:`open` reads them."""

    container: Path | bytes
    """The zip file, or the zip bytes the container was read from."""
    name: str
    sha256: bytes
    size: int

    @contextlib.contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        """The entry's inflated bytes as a stream (zip's CRC is checked at its end)."""
        source = io.BytesIO(self.container) if isinstance(self.container, bytes) else self.container
        with zipfile.ZipFile(source) as zf, zf.open(self.name) as fh:
            yield fh


@dataclass(frozen=True)
class LogRecord:
    """A sealed log record; build one with :meth:`create`, never by hand.

    ``signed_digest`` is the exact byte string the message signature
    (``signature``, detached CMS) was made over; the message module computes
    it from the message, the log only has to show that the CMS verifies over
    it and that the record was not changed afterwards.
    """

    id: str
    chain_id: str
    seq: int
    time: dt.datetime
    direction: Direction
    node_id: str
    client_id: str | None
    service_id: str | None
    message_id: str | None
    user_id: str | None
    purpose: str | None
    legal_basis: str | None
    data_subject: str | None
    decision: str | None
    reason: str | None
    body_sha256: bytes
    body_size: int
    headers_sha256: bytes
    signed_digest: bytes | None
    signature: bytes | None
    signer_cert_sha256: bytes | None
    ocsp_sha256: bytes | None
    prev_hash: bytes
    record_hash: bytes
    witness: str | None = None
    """The peer node's log position for this message (``docs/audit.md`` "Cross-witnessed
    logs"): compact JSON, hashed; absent from the canonical form when None, so records
    without one hash as they did before the field existed."""
    body: bytes | None = dataclasses.field(default=None, compare=False, repr=False)
    body_file: str | None = dataclasses.field(default=None, compare=False, repr=False)
    """Where the body is kept instead of ``body``: a content-addressed body file (not
    hashed: the record binds the body through ``body_sha256``, docs/audit.md)."""
    body_entry: BodyEntry | None = dataclasses.field(default=None, compare=False, repr=False)
    """For a record read from a container: its body's ``bodies/`` entry, measured (then
    ``body_file`` only says where it is)."""

    def __post_init__(self) -> None:
        where = f"record {self.chain_id}#{self.seq}"
        if not isinstance(self.id, str) or not _RECORD_ID.match(self.id):
            raise RecordError(f"{where}: id must match {_RECORD_ID.pattern}")
        if not isinstance(self.chain_id, str) or not _CHAIN_ID.match(self.chain_id):
            raise RecordError(f"{where}: chain_id must match {_CHAIN_ID.pattern}")
        if (
            isinstance(self.seq, bool)
            or not isinstance(self.seq, int)
            or not (1 <= self.seq <= 2**53 - 1)
        ):
            raise RecordError(f"{where}: seq must be a positive integer")
        if not isinstance(self.time, dt.datetime) or self.time.tzinfo is None:
            raise RecordError(f"{where}: time must be a timezone-aware datetime")
        if not isinstance(self.direction, Direction):
            raise RecordError(f"{where}: direction must be a Direction")
        for name in ("node_id",):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
                raise RecordError(f"{where}: {name} must be a non-empty string")
        for name in (
            "client_id",
            "service_id",
            "message_id",
            "user_id",
            "purpose",
            "legal_basis",
            "data_subject",
            "decision",
            "reason",
            "witness",
        ):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
                raise RecordError(f"{where}: {name} must be a string of at most {MAX_TEXT}")
        for name in (
            "id",
            "chain_id",
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
            "witness",
        ):
            value = getattr(self, name)
            if value is not None and not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise RecordError(f"{where}: {name} is not valid Unicode") from exc
        for name in ("body_sha256", "headers_sha256", "prev_hash", "record_hash"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != 32:
                raise RecordError(f"{where}: {name} must be 32 bytes")
        for name in ("signer_cert_sha256", "ocsp_sha256"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, bytes) or len(value) != 32):
                raise RecordError(f"{where}: {name} must be 32 bytes or None")
        for name in ("signed_digest", "signature", "body"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bytes):
                raise RecordError(f"{where}: {name} must be bytes or None")
        if (self.signature is None) != (self.signed_digest is None):
            raise RecordError(f"{where}: signature and signed_digest come together or not at all")
        if (
            isinstance(self.body_size, bool)
            or not isinstance(self.body_size, int)
            or not (0 <= self.body_size <= 2**53 - 1)
        ):
            raise RecordError(f"{where}: body_size must be a non-negative integer")

    # ----- construction -------------------------------------------------------------
    @classmethod
    def create(
        cls,
        *,
        chain_id: str,
        seq: int,
        prev_hash: bytes,
        time: dt.datetime,
        direction: Direction | str,
        node_id: str,
        headers_sha256: bytes,
        body: bytes | None = None,
        body_sha256: bytes | None = None,
        body_size: int | None = None,
        keep_body: bool = True,
        client_id: str | None = None,
        service_id: str | None = None,
        message_id: str | None = None,
        user_id: str | None = None,
        purpose: str | None = None,
        legal_basis: str | None = None,
        data_subject: str | None = None,
        decision: str | None = None,
        reason: str | None = None,
        signed_digest: bytes | None = None,
        signature: bytes | None = None,
        signer_cert_sha256: bytes | None = None,
        ocsp_sha256: bytes | None = None,
        record_id: str | None = None,
        witness: str | None = None,
    ) -> LogRecord:
        """Seal a new record after ``prev_hash`` (use :func:`genesis_hash` for seq 1).

        Give ``body`` (digest and size are computed, and it is kept unless
        ``keep_body`` is false) or, for streamed bodies, ``body_sha256`` and
        ``body_size`` without the bytes. The time is normalised to UTC here
        (datetimes hold microseconds, the canonical form's precision) so that
        ``create(...).time`` equals what a reader parses back.
        """
        if body is not None:
            digest = hashlib.sha256(body).digest()
            if body_sha256 is not None and body_sha256 != digest:
                raise RecordError("body_sha256 does not match the body given")
            body_sha256, body_size = digest, len(body)
        if body_sha256 is None or body_size is None:
            raise RecordError("give the body, or its body_sha256 and body_size")
        if not isinstance(time, dt.datetime) or time.tzinfo is None:
            raise RecordError("record time must be timezone-aware")
        draft = cls(
            id=record_id or new_record_id(),
            chain_id=chain_id,
            seq=seq,
            time=time.astimezone(dt.UTC),
            direction=Direction(direction),
            node_id=node_id,
            client_id=client_id,
            service_id=service_id,
            message_id=message_id,
            user_id=user_id,
            purpose=purpose,
            legal_basis=legal_basis,
            data_subject=data_subject,
            decision=decision,
            reason=reason,
            body_sha256=body_sha256,
            body_size=body_size,
            headers_sha256=headers_sha256,
            signed_digest=signed_digest,
            signature=signature,
            signer_cert_sha256=signer_cert_sha256,
            ocsp_sha256=ocsp_sha256,
            prev_hash=prev_hash,
            record_hash=bytes(32),
            witness=witness,
            body=body if keep_body else None,
        )
        # Set in place rather than dataclasses.replace(): this runs once per message on
        # the message path, and replace() would validate every field a second time.
        object.__setattr__(draft, "record_hash", draft.computed_hash())
        return draft

    # ----- hashing ------------------------------------------------------------------
    def canonical_fields(self) -> dict[str, Any]:
        """The hashed fields as JSON values (bytes as hex digests or base64 blobs);
        ``witness`` only when the record has one."""
        fields = {
            "version": RECORD_VERSION,
            "id": self.id,
            "chain_id": self.chain_id,
            "seq": self.seq,
            "time": format_time(self.time),
            "direction": self.direction.value,
            "node_id": self.node_id,
            "client_id": self.client_id,
            "service_id": self.service_id,
            "message_id": self.message_id,
            "user_id": self.user_id,
            "purpose": self.purpose,
            "legal_basis": self.legal_basis,
            "data_subject": self.data_subject,
            "decision": self.decision,
            "reason": self.reason,
            "body_sha256": hex32(self.body_sha256),
            "body_size": self.body_size,
            "headers_sha256": hex32(self.headers_sha256),
            "signed_digest": None if self.signed_digest is None else b64(self.signed_digest),
            "signature": None if self.signature is None else b64(self.signature),
            "signer_cert_sha256": (
                None if self.signer_cert_sha256 is None else hex32(self.signer_cert_sha256)
            ),
            "ocsp_sha256": None if self.ocsp_sha256 is None else hex32(self.ocsp_sha256),
        }
        if self.witness is not None:
            fields["witness"] = self.witness
        return fields

    def computed_hash(self, prev_hash: bytes | None = None) -> bytes:
        """What ``record_hash`` must be, recomputed from the content (and ``prev_hash``)."""
        prev = self.prev_hash if prev_hash is None else prev_hash
        return record_hash(prev, canonical_bytes(self))

    def hash_ok(self) -> bool:
        return self.computed_hash() == self.record_hash

    def body_ok(self) -> bool:
        """True when no body is kept, or the kept body matches its digest and size."""
        if self.body is None:
            return True
        return len(self.body) == self.body_size and (
            hashlib.sha256(self.body).digest() == self.body_sha256
        )

    def body_problem(self, *, hash_file: bool = True) -> str | None:
        """Why the kept body (in the record, or its body file) is not the body the record
        names; None when it is, or when no body is kept. ``hash_file=False``: a body file
        is only checked to exist with the right size (its bytes are hashed elsewhere, as
        they stream into an archive)."""
        if self.body is not None:
            return None if self.body_ok() else "body does not match body_sha256/body_size"
        if self.body_entry is not None:
            entry = self.body_entry
            if entry.size != self.body_size:
                return (
                    f"archive entry {entry.name} has {entry.size} bytes, "
                    f"the record says {self.body_size}"
                )
            if entry.sha256 != self.body_sha256:
                return f"archive entry {entry.name} does not match body_sha256"
            return None
        if self.body_file is None:
            return None
        try:
            size = os.stat(self.body_file).st_size
        except OSError as exc:
            return f"body file {self.body_file} is missing ({exc.strerror or exc})"
        if size != self.body_size:
            return f"body file {self.body_file} has {size} bytes, the record says {self.body_size}"
        if not hash_file:
            return None
        digest = hashlib.sha256()
        with open(self.body_file, "rb") as f:
            while piece := f.read(BODY_PIECE):
                digest.update(piece)
        if digest.digest() != self.body_sha256:
            return f"body file {self.body_file} does not match body_sha256"
        return None

    def open_body(self) -> AbstractContextManager[IO[bytes]]:
        """The kept body as a binary stream: ``body``, its container entry or its body file
        (not checked here: :meth:`body_problem` does that)."""
        if self.body is not None:
            return io.BytesIO(self.body)
        if self.body_entry is not None:
            return self.body_entry.open()
        if self.body_file is not None:
            return open(self.body_file, "rb")
        raise ValueError(f"record {self.ref} keeps no body")

    def without_body(self) -> LogRecord:
        """The same record with its body purged; still verifiable through the digest."""
        return dataclasses.replace(self, body=None, body_file=None, body_entry=None)

    # ----- storage form -------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The stored form: hashed fields plus ``prev_hash``, ``record_hash``, ``body``."""
        obj = self.canonical_fields()
        obj["prev_hash"] = hex32(self.prev_hash)
        obj["record_hash"] = hex32(self.record_hash)
        obj["body"] = None if self.body is None else b64(self.body)
        if self.body is None and self.body_file is not None:
            obj["body_file"] = True  # the body is the container's bodies/<body_sha256> entry
        return obj

    def to_jsonl(self) -> bytes:
        """One ``records.jsonl`` line (canonical JSON, no trailing newline)."""
        return canonical_json(self.to_json())

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LogRecord:
        """Strictly parse the stored form; does not check the hash (the verifier does)."""
        what = "record"
        if isinstance(obj.get("chain_id"), str) and isinstance(obj.get("seq"), int):
            what = f"record {obj['chain_id']}#{obj['seq']}"
        require_keys(obj, _STORED_KEYS | ({"witness", "body_file"} & obj.keys()), what)
        if obj["version"] != RECORD_VERSION:
            raise RecordError(f"{what}: unsupported record version {obj['version']!r}")
        direction = get_str(obj, "direction", what)
        try:
            parsed_direction = Direction(direction)
        except ValueError as exc:
            raise RecordError(f"{what}: unknown direction {direction!r}") from exc
        return cls(
            id=get_str(obj, "id", what),
            chain_id=get_str(obj, "chain_id", what),
            seq=get_int(obj, "seq", what),
            time=parse_time(obj["time"], what),
            direction=parsed_direction,
            node_id=get_str(obj, "node_id", what),
            client_id=get_opt_str(obj, "client_id", what),
            service_id=get_opt_str(obj, "service_id", what),
            message_id=get_opt_str(obj, "message_id", what),
            user_id=get_opt_str(obj, "user_id", what),
            purpose=get_opt_str(obj, "purpose", what),
            legal_basis=get_opt_str(obj, "legal_basis", what),
            data_subject=get_opt_str(obj, "data_subject", what),
            decision=get_opt_str(obj, "decision", what),
            reason=get_opt_str(obj, "reason", what),
            body_sha256=from_hex32(obj["body_sha256"], f"{what}: body_sha256"),
            body_size=_nonneg(get_opt_int(obj, "body_size", what), what),
            headers_sha256=from_hex32(obj["headers_sha256"], f"{what}: headers_sha256"),
            signed_digest=opt_from_b64(obj["signed_digest"], f"{what}: signed_digest"),
            signature=opt_from_b64(obj["signature"], f"{what}: signature"),
            signer_cert_sha256=opt_from_hex32(
                obj["signer_cert_sha256"], f"{what}: signer_cert_sha256"
            ),
            ocsp_sha256=opt_from_hex32(obj["ocsp_sha256"], f"{what}: ocsp_sha256"),
            prev_hash=from_hex32(obj["prev_hash"], f"{what}: prev_hash"),
            record_hash=from_hex32(obj["record_hash"], f"{what}: record_hash"),
            witness=_opt_witness(obj, what),
            body=opt_from_b64(obj["body"], f"{what}: body"),
            body_file=_opt_body_file(obj, what),
        )

    @classmethod
    def from_jsonl(cls, line: bytes) -> LogRecord:
        return cls.from_json(parse_json_object(line, "record"))

    @property
    def ref(self) -> str:
        """How reports name a record: ``chain#seq (id)``."""
        return f"{self.chain_id}#{self.seq} ({self.id})"


def _opt_witness(obj: dict[str, Any], what: str) -> str | None:
    """The optional ``witness`` key: absent (records before the field) or a string."""
    if "witness" not in obj:
        return None
    value = obj["witness"]
    if not isinstance(value, str):
        raise RecordError(f"{what}: witness must be a string when present")
    return value


def _opt_body_file(obj: dict[str, Any], what: str) -> str | None:
    """The optional ``body_file`` key (``true``: the body is the container's
    ``bodies/<body_sha256>`` entry); the name it stands for until the entry is read."""
    if "body_file" not in obj:
        return None
    if obj["body_file"] is not True or obj["body"] is not None:
        raise RecordError(f"{what}: body_file must be true, and only for a record without body")
    return BODY_ENTRY_PREFIX + str(obj["body_sha256"])


#: Where a container keeps a body file: ``bodies/<64 hex of body_sha256>``.
BODY_ENTRY_PREFIX = "bodies/"


def _nonneg(value: int | None, what: str) -> int:
    if value is None or value < 0:
        raise RecordError(f"{what}: body_size must be a non-negative integer")
    return value


def canonical_bytes(record: LogRecord) -> bytes:
    """The exact bytes hashed into ``record_hash`` (canonical JSON of the hashed fields).

    Same bytes as :func:`canonical_json` of :meth:`LogRecord.canonical_fields`,
    written out directly through :class:`CanonicalTemplate` (see there why).
    ``__post_init__`` already guarantees the types, integer ranges and valid
    Unicode; ``tests/test_messagelog_writer.py`` checks the equivalence.
    """
    r = record
    texts = HeaderTexts.of(
        client_id=r.client_id,
        service_id=r.service_id,
        message_id=r.message_id,
        user_id=r.user_id,
        purpose=r.purpose,
        legal_basis=r.legal_basis,
        data_subject=r.data_subject,
    )
    template = CanonicalTemplate.of(
        texts,
        time_text=format_time(r.time),
        direction=r.direction.value,
        decision=r.decision,
        reason=r.reason,
        body_sha256=r.body_sha256,
        body_size=r.body_size,
        headers_sha256=r.headers_sha256,
        signed_digest=r.signed_digest,
        signature=r.signature,
        signer_cert_sha256=r.signer_cert_sha256,
        ocsp_sha256=r.ocsp_sha256,
        witness=r.witness,
    )
    return template.render(_quote(r.chain_id), _quote(r.id), _quote(r.node_id), r.seq)


@dataclass(frozen=True, slots=True)
class HeaderTexts:
    """The hashed fields a message's records share (from its headers), JSON-rendered.

    A request and its response are logged with the same header fields; the
    node renders them once per message (``secnode.messagelog.convert``).
    """

    client_id: str
    data_subject: str
    legal_basis_to_node: str  # legal_basis, message_id, then the key of node_id
    purpose: str
    service_id: str
    user_id: str

    @classmethod
    def of(
        cls,
        *,
        client_id: str | None,
        service_id: str | None,
        message_id: str | None,
        user_id: str | None,
        purpose: str | None,
        legal_basis: str | None,
        data_subject: str | None,
    ) -> HeaderTexts:
        text = _text
        return cls(
            client_id=text(client_id),
            data_subject=text(data_subject),
            legal_basis_to_node="".join(
                (
                    ',"legal_basis":',
                    text(legal_basis),
                    ',"message_id":',
                    text(message_id),
                    ',"node_id":',
                )
            ),
            purpose=text(purpose),
            service_id=text(service_id),
            user_id=text(user_id),
        )


@dataclass(frozen=True, slots=True)
class CanonicalTemplate:
    """A record's canonical bytes with the writer's parts (chain id, record id, node id, seq)
    left open.

    The keys are fixed and already in code-point order, so the canonical JSON
    is five constant-per-record pieces around those four values. The node
    renders the pieces once, when the message is logged, and sealing a record
    in the writer is then one join and one SHA-256 (the writer seals on the
    event loop, in commit order; ``docs/performance.md``). Strings go through
    the json module's own escaper (the one ``json.dumps`` uses with
    ``ensure_ascii=False``), integers through ``int.__repr__``.
    """

    head: str  # body_sha256, body_size, then the key of chain_id
    after_chain: str  # client_id .. headers_sha256, then the key of id
    after_id: str  # legal_basis, message_id, then the key of node_id
    after_node: str  # ocsp_sha256 .. reason, then the key of seq
    tail: str  # service_id .. version (and witness, when there is one)

    @classmethod
    def of(
        cls,
        texts: HeaderTexts,
        *,
        time_text: str,
        direction: str,
        decision: str | None,
        reason: str | None,
        body_sha256: bytes,
        body_size: int,
        headers_sha256: bytes,
        signed_digest: bytes | None,
        signature: bytes | None,
        signer_cert_sha256: bytes | None,
        ocsp_sha256: bytes | None,
        witness: str | None = None,
    ) -> CanonicalTemplate:
        text, blob, digest = _text, _blob, _digest
        return cls(
            head=f'{{"body_sha256":"{body_sha256.hex()}","body_size":'
            f'{int.__repr__(body_size)},"chain_id":',
            after_chain="".join(
                (
                    ',"client_id":',
                    texts.client_id,
                    ',"data_subject":',
                    texts.data_subject,
                    ',"decision":',
                    text(decision),
                    ',"direction":',
                    _quote(direction),
                    ',"headers_sha256":"',
                    headers_sha256.hex(),
                    '","id":',
                )
            ),
            after_id=texts.legal_basis_to_node,
            after_node="".join(
                (
                    ',"ocsp_sha256":',
                    digest(ocsp_sha256),
                    ',"purpose":',
                    texts.purpose,
                    ',"reason":',
                    text(reason),
                    ',"seq":',
                )
            ),
            tail="".join(
                (
                    ',"service_id":',
                    texts.service_id,
                    ',"signature":',
                    blob(signature),
                    ',"signed_digest":',
                    blob(signed_digest),
                    ',"signer_cert_sha256":',
                    digest(signer_cert_sha256),
                    ',"time":"',
                    time_text,
                    '","user_id":',
                    texts.user_id,
                    ',"version":',
                    int.__repr__(RECORD_VERSION),
                    "" if witness is None else ',"witness":' + _quote(witness),
                    "}",
                )
            ),
        )

    def render(self, chain_json: str, id_json: str, node_json: str, seq: int) -> bytes:
        """The canonical bytes; the three strings already JSON-quoted (:func:`json_string`)."""
        return "".join(
            (
                self.head,
                chain_json,
                self.after_chain,
                id_json,
                self.after_id,
                node_json,
                self.after_node,
                int.__repr__(seq),
                self.tail,
            )
        ).encode()


def check_text(name: str, value: str | None) -> None:
    """What ``LogRecord`` demands of an optional text field: at most MAX_TEXT characters,
    encodable as UTF-8 (no lone surrogates). For values sealed without building a record."""
    if value is None:
        return
    if len(value) > MAX_TEXT:
        raise RecordError(f"{name} must be a string of at most {MAX_TEXT} characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise RecordError(f"{name} is not valid Unicode") from exc


#: The string escaper json.dumps(ensure_ascii=False) uses (C-accelerated when available).
_quote = json.encoder.encode_basestring
json_string = _quote


def _text(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def _blob(value: bytes | None) -> str:
    return "null" if value is None else '"' + b64(value) + '"'


def _digest(value: bytes | None) -> str:
    return "null" if value is None else '"' + value.hex() + '"'


def record_hash(prev_hash: bytes, canonical: bytes) -> bytes:
    """``SHA-256(prev_hash || canonical)``; ``prev_hash`` is the raw 32 bytes."""
    if len(prev_hash) != 32:
        raise RecordError("prev_hash must be 32 bytes")
    return hashlib.sha256(prev_hash + canonical).digest()


_STORED_KEYS = frozenset(
    {
        "version",
        "id",
        "chain_id",
        "seq",
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
    }
)
