"""Extension points on the message path: a decision before forwarding, an event after each step.

The policy engine plugs in as a :class:`DecisionPoint`; the message log as an
:class:`EventSink`. Both are awaited on the message path, so a sink that must be
durable (the log) can make the answer wait for its commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from secnode.core.message import Body, MessageHeaders
from secnode.core.witness import LogPosition
from secnode.proxy.spool import Payload, Spool


@dataclass
class ExchangeEvent:
    """One step of an exchange as the node saw it (request, response or refusal)."""

    direction: str  # request_in | request_out | response_in | response_out | refusal
    headers: MessageHeaders
    body_sha256: bytes
    signed_digest: bytes = b""
    signature: bytes = b""
    signer_cert_sha256: str = ""
    ocsp_sha256: str = ""
    decision: str = "allow"  # allow | deny
    reason: str = ""
    status: int | None = None
    body: Payload | None = None
    """The body; a :class:`Spool` kept in a file is stored by the log as a body file."""
    log_body: bool = True
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    extra: dict[str, Any] = field(default_factory=dict)
    # The certificate and OCSP response (DER) that signer_cert_sha256 / ocsp_sha256 name,
    # so the message log can keep them as evidence (stored once per hash).
    signer_cert_der: bytes | None = None
    ocsp_der: bytes | None = None
    witness: str | None = None
    """The peer node's log position for this message, as its record keeps it."""

    @classmethod
    def of(
        cls,
        direction: str,
        headers: MessageHeaders,
        body: Payload | None,
        *,
        log_body: bool,
        signed: Signed | None = None,
        body_sha256: bytes | None = None,
        reason: str = "",
        status: int | None = None,
        extra: dict[str, Any] | None = None,
        witness: str | None = None,
    ) -> ExchangeEvent:
        """The one way the node builds an event, so the body's hash and the signature's
        evidence (from ``signed``) cannot be paired wrongly. ``body_sha256``: the hash of
        ``body`` when the caller has it already. A refusal is a deny, every other step an
        allow."""
        if body_sha256 is None:
            if isinstance(body, Spool):
                body_sha256 = body.sha256
            else:
                body_sha256 = hashlib.sha256(body).digest() if body is not None else b""
        event = cls(
            direction,
            headers,
            body_sha256,
            decision="deny" if direction == "refusal" else "allow",
            reason=reason,
            status=status,
            body=body,
            log_body=log_body,
            extra=extra or {},
            witness=witness,
        )
        if signed is not None:
            event.signed_digest = signed.digest
            event.signature = signed.signature
            event.signer_cert_sha256 = signed.cert_sha256
            event.signer_cert_der = signed.cert_der
            event.ocsp_sha256 = hashlib.sha256(signed.ocsp_der).hexdigest()
            event.ocsp_der = signed.ocsp_der
        return event


@dataclass(frozen=True)
class Signed:
    """One signature of an exchange with its evidence: the digest signed, the CMS
    signature, the signer's certificate (DER and SHA-256 hex) and its stapled OCSP
    response (DER)."""

    digest: bytes
    signature: bytes
    cert_der: bytes
    cert_sha256: str
    ocsp_der: bytes


class EventSink(Protocol):
    async def record(self, event: ExchangeEvent) -> LogPosition | None:
        """Persist ``event``; raising refuses the message (a message is not answered unlogged).
        Returns where the record is (the position the peer witnesses), None when nothing is
        logged."""


@dataclass
class Verdict:
    allow: bool
    reason: str = ""
    message: str = ""
    permitted_fields: list[str] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # --- policy ---
    record: str = ""
    """Text for the message-log record of the request (reason, article, decision digest),
    so the log's signature and time-stamp cover the decision; ``reason`` when empty."""
    statement: str | None = None
    """The provider's policy statement for the client node (set by ``after_response``),
    sent with the response and bound by the response signature (docs/protocol.md §4)."""


class DecisionPoint(Protocol):
    async def decide(self, headers: MessageHeaders, side: str) -> Verdict:
        """``side`` is 'client' (early refusal) or 'provider' (authoritative decision)."""

    async def after_response(
        self, headers: MessageHeaders, verdict: Verdict, body: Body, content_type: str
    ) -> Body:
        """Filter the response body to the permitted fields; record provisions. A spooled
        response that ``verdict`` does not filter is passed as ``b""`` (it stays on disk)."""

    async def on_response(
        self,
        headers: MessageHeaders,
        verdict: Verdict,
        status: int,
        body: Body,
        statement: str | None,
    ) -> None:
        """Client node, after the provider's signed response was verified: record the
        receipt (APPI Art. 30). Raising refuses to hand the response to the client. A
        response spooled to disk is passed as ``b""`` (the receipt is about the statement)."""


class NullSink:
    """Used until the message log is configured: records nothing."""

    async def record(self, event: ExchangeEvent) -> LogPosition | None:
        return None


class AllowAll:
    """No policy beyond access rights (services that carry no personal data)."""

    async def decide(self, headers: MessageHeaders, side: str) -> Verdict:
        return Verdict(True, "NOT_PERSONAL_DATA")

    async def after_response(
        self, headers: MessageHeaders, verdict: Verdict, body: Body, content_type: str
    ) -> Body:
        return body

    async def on_response(
        self,
        headers: MessageHeaders,
        verdict: Verdict,
        status: int,
        body: Body,
        statement: str | None,
    ) -> None:
        return None
