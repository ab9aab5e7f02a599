"""The canonical exchange model and the digests that nodes sign.

Both nodes sign, log and later prove *what* was exchanged. Signing raw HTTP
or XML would tie the evidence to one wire format and force canonicalisation
(slow, and a classic source of signature-wrapping bugs). Instead a node
reduces a request or response to :class:`MessageHeaders` plus the SHA-256 of
the body bytes exactly as received (hashed incrementally while streaming, so
a large body is never held just to be signed), and signs a SHA-256 over a
length-prefixed encoding of those fields. The encoding is specified byte for
byte in ``docs/protocol.md`` ("Canonical message digest") so the offline
verifier or another implementation can recompute it.

Pure: no I/O, no aiohttp, no lxml.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from secnode.core.identifiers import ClientId, MemberId, ServiceId, SubsystemId
from secnode.core.witness import LogPosition

Protocol = Literal["soap", "rest"]

# v2: the policy extension fields (agreement ... data_from) and the response's policy
# statement are bound (docs/protocol.md §4). A new field set is a new domain string.
# Response v3: the provider's log position (witness) is bound (docs/protocol.md §4.1).
REQUEST_DOMAIN: Final = b"secnode/request-digest/v2"
RESPONSE_DOMAIN: Final = b"secnode/response-digest/v3"
DIGEST_SIZE: Final = 32  # SHA-256

# Limits for free-text header values. Generous for real use; they bound what a
# node must log and sign, and keep a hostile client from smuggling megabytes
# through a header that is copied into every log record.
MAX_MESSAGE_ID_LENGTH: Final = 255
MAX_HEADER_VALUE_LENGTH: Final = 1024
MAX_POLICY_STATEMENT_BYTES: Final = 6144
REST_METHODS: Final = frozenset(
    {"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)

_CONTROL: Final = re.compile("[\x00-\x1f\x7f]")
# A SOAP ``issue`` may span lines (X-Road's SplitHeader case); it never becomes an HTTP header.
_CONTROL_BUT_LINES: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

#: Policy context beyond purpose / legal basis / data subject (docs/policy.md §6): the
#: provider's policy engine decides on these, so they are signed like the others.
#: (MessageHeaders attribute, REST header, SOAP element in the policy namespace).
POLICY_EXTENSIONS: Final = (
    ("agreement", "X-Road-Agreement", "agreement"),
    ("consent_id", "X-Road-Consent-Id", "consentId"),
    ("data_items", "X-Road-Data-Items", "dataItems"),
    ("evidence", "X-Road-Evidence", "evidence"),
    ("recipient_country", "X-Road-Recipient-Country", "recipientCountry"),
    ("recurring", "X-Road-Recurring", "recurring"),
    ("data_from", "X-Road-Data-From", "dataFrom"),
)

_ABSENT: Final = b"\x00"
_TEXT: Final = b"\x01"
_BYTES: Final = b"\x02"


#: A message body as the node holds it: read into one buffer (``bytearray``), not copied
#: into ``bytes`` (docs/operations.md, "Memory budget").
Body = bytes | bytearray


class MessageError(ValueError):
    """A header value that cannot be part of a message (too long, control characters...)."""


def check_text(
    name: str, value: str, max_length: int = MAX_HEADER_VALUE_LENGTH, *, lines: bool = False
) -> str:
    """Return ``value`` if it is acceptable as header field ``name``, else raise.

    Refuses empty values, values over ``max_length`` characters, and control
    characters (they would allow header injection when the value is echoed in
    an HTTP header, and make log lines ambiguous). Shared by the SOAP and REST
    parsers so both protocols accept exactly the same values. With ``lines`` a value may
    hold tabs and line breaks (a SOAP ``issue``: it is never echoed in an HTTP header).
    """
    if not isinstance(value, str):
        raise MessageError(f"{name} must be text")
    if value == "":
        raise MessageError(f"{name} is empty")
    if len(value) > max_length:
        raise MessageError(f"{name} is longer than {max_length} characters")
    if (_CONTROL_BUT_LINES if lines else _CONTROL).search(value):
        raise MessageError(f"{name} contains control characters")
    return value


@dataclass(frozen=True, slots=True)
class MessageHeaders:
    """Everything about one request that is signed, apart from its body.

    ``protocol`` says which client interface the request came in on. For REST,
    ``rest_method`` and ``rest_path`` are mandatory (``rest_path`` is the raw,
    still percent-encoded path after the service code, ``""`` if none, and
    ``rest_query`` the raw query string without ``?``, ``None`` if the URL had
    no ``?``); for SOAP they must be ``None``. ``content_type`` is the request's
    ``Content-Type`` as received, ``None`` if it had none.
    """

    protocol: Protocol
    client: ClientId
    service: ServiceId
    message_id: str
    user_id: str | None = None
    issue: str | None = None
    purpose: str | None = None
    legal_basis: str | None = None
    data_subject: str | None = None
    agreement: str | None = None
    consent_id: str | None = None
    data_items: str | None = None
    evidence: str | None = None
    recipient_country: str | None = None
    recurring: str | None = None
    data_from: str | None = None
    rest_method: str | None = None
    rest_path: str | None = None
    rest_query: str | None = None
    content_type: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in ("soap", "rest"):
            raise MessageError(f"protocol must be 'soap' or 'rest', not {self.protocol!r}")
        if not isinstance(self.client, (MemberId, SubsystemId)):
            raise MessageError("client must be a MemberId or SubsystemId")
        if not isinstance(self.service, ServiceId):
            raise MessageError("service must be a ServiceId")
        check_text("message id", self.message_id, MAX_MESSAGE_ID_LENGTH)
        if self.issue is not None:
            check_text("issue", self.issue, lines=self.protocol == "soap")
        for name, value in (
            ("user id", self.user_id),
            ("purpose", self.purpose),
            ("legal basis", self.legal_basis),
            ("data subject", self.data_subject),
            *((attr.replace("_", " "), getattr(self, attr)) for attr, _, _ in POLICY_EXTENSIONS),
            ("content type", self.content_type),
        ):
            if value is not None:
                check_text(name, value)
        if self.protocol == "rest":
            if self.rest_method not in REST_METHODS:
                raise MessageError(f"unsupported REST method {self.rest_method!r}")
            if self.rest_path is None:
                raise MessageError("REST message needs rest_path")
            if self.rest_path and not self.rest_path.startswith("/"):
                raise MessageError("rest_path must be empty or start with '/'")
            for name, value in (("rest path", self.rest_path), ("rest query", self.rest_query)):
                if value and _CONTROL.search(value):
                    raise MessageError(f"{name} contains control characters")
        elif (self.rest_method, self.rest_path, self.rest_query) != (None, None, None):
            raise MessageError("SOAP message must not carry REST method, path or query")


def _field(name: bytes, value: str | bytes | None) -> bytes:
    head = struct.pack(">B", len(name)) + name
    if value is None:
        return head + _ABSENT
    if isinstance(value, str):
        raw, tag = value.encode("utf-8"), _TEXT
    else:
        raw, tag = bytes(value), _BYTES
    return head + tag + struct.pack(">I", len(raw)) + raw


def _header_fields(h: MessageHeaders) -> list[tuple[bytes, str | bytes | None]]:
    client_type = "SUBSYSTEM" if isinstance(h.client, SubsystemId) else "MEMBER"
    return [
        (b"protocol", h.protocol),
        (b"client_type", client_type),
        (b"client", str(h.client)),
        (b"service", str(h.service)),
        (b"message_id", h.message_id),
        (b"user_id", h.user_id),
        (b"issue", h.issue),
        (b"purpose", h.purpose),
        (b"legal_basis", h.legal_basis),
        (b"data_subject", h.data_subject),
        (b"agreement", h.agreement),
        (b"consent_id", h.consent_id),
        (b"data_items", h.data_items),
        (b"evidence", h.evidence),
        (b"recipient_country", h.recipient_country),
        (b"recurring", h.recurring),
        (b"data_from", h.data_from),
        (b"rest_method", h.rest_method),
        (b"rest_path", h.rest_path),
        (b"rest_query", h.rest_query),
    ]


def _domain(domain: bytes) -> bytes:
    return struct.pack(">B", len(domain)) + domain


def _encode_fields(fields: Iterable[tuple[bytes, str | bytes | None]]) -> bytes:
    return b"".join(_field(name, value) for name, value in fields)


@functools.lru_cache(maxsize=512)
def _header_part(headers: MessageHeaders) -> bytes:
    """The encoded header fields; both digests of one message share them (computed once)."""
    return _encode_fields(_header_fields(headers))


def _check_digest(name: str, value: bytes) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != DIGEST_SIZE:
        raise MessageError(f"{name} must be {DIGEST_SIZE} bytes (a SHA-256 digest)")
    return bytes(value)


def request_digest_input(headers: MessageHeaders, body_sha256: bytes) -> bytes:
    """The exact bytes :func:`request_digest` hashes (exposed for test vectors and logs)."""
    tail = _encode_fields(
        [
            (b"content_type", headers.content_type),
            (b"body_sha256", _check_digest("body_sha256", body_sha256)),
        ]
    )
    return _domain(REQUEST_DOMAIN) + _header_part(headers) + tail


def request_digest(headers: MessageHeaders, body_sha256: bytes) -> bytes:
    """SHA-256 binding a request's identifiers, ids, policy headers and body digest.

    This is what the client node signs and both nodes log. ``body_sha256`` is
    the SHA-256 of the body bytes exactly as the client sent them (the whole
    SOAP envelope, or the REST body; SHA-256 of b"" when there is none).
    """
    return hashlib.sha256(request_digest_input(headers, body_sha256)).digest()


def check_policy_statement(value: str | None) -> str | None:
    """The provider's policy statement on a response: text, bounded, no control characters."""
    if value is None:
        return None
    check_text("policy statement", value, MAX_POLICY_STATEMENT_BYTES)
    if len(value.encode("utf-8")) > MAX_POLICY_STATEMENT_BYTES:
        raise MessageError(f"policy statement is longer than {MAX_POLICY_STATEMENT_BYTES} bytes")
    return value


def response_digest_input(
    headers: MessageHeaders,
    request_digest: bytes,
    status: int,
    content_type: str | None,
    body_sha256: bytes,
    policy: str | None = None,
    witness: LogPosition | None = None,
) -> bytes:
    """The exact bytes :func:`response_digest` hashes."""
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise MessageError(f"status must be an HTTP status code, not {status!r}")
    if content_type is not None:
        check_text("content type", content_type)
    tail = _encode_fields(
        [
            (b"request_digest", _check_digest("request_digest", request_digest)),
            (b"status", str(status)),
            (b"content_type", content_type),
            (b"policy", check_policy_statement(policy)),
            (b"body_sha256", _check_digest("body_sha256", body_sha256)),
            (b"witness", None if witness is None else witness.encode()),
        ]
    )
    return _domain(RESPONSE_DOMAIN) + _header_part(headers) + tail


def response_digest(
    headers: MessageHeaders,
    request_digest: bytes,
    status: int,
    content_type: str | None,
    body_sha256: bytes,
    policy: str | None = None,
    witness: LogPosition | None = None,
) -> bytes:
    """SHA-256 binding a response to its request (via the request's digest).

    ``headers`` are the *request's* headers (the response answers exactly that
    request); ``status`` the provider's HTTP status, ``content_type`` the
    response's ``Content-Type`` and ``body_sha256`` the SHA-256 of the response
    body as the provider node hands it on (for SOAP: after ``requestHash`` was
    inserted). ``policy`` is the provider node's policy statement (compact JSON:
    the decision and the APPI Art. 30 items the recipient records), absent when
    the provider made none; signing it makes the provider answerable for what the
    client node writes into its receipt record. ``witness`` is the provider node's
    ``request_in`` log position (:mod:`secnode.core.witness`), absent only from a node
    that keeps no message log. The provider node signs the digest; the client node
    checks it.
    """
    data = response_digest_input(
        headers, request_digest, status, content_type, body_sha256, policy, witness
    )
    return hashlib.sha256(data).digest()
