"""Node-to-node wire format (pure): how a signed message travels between two nodes.

One HTTPS request per exchange, over mutual TLS on the nodes' auth keys:
``POST /secnode/v1/exchange``; the HTTP body is the client's message body,
byte for byte; the signed metadata travels in headers (see docs/protocol.md).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, fields
from typing import Any

from secnode.core.identifiers import IdentifierError, ServiceId, parse_client
from secnode.core.message import MessageError, MessageHeaders
from secnode.core.witness import LogPosition, RequestWitness, WitnessError

EXCHANGE_PATH = "/secnode/v1/exchange"
WIRE_VERSION = "1"

H_VERSION = "Secnode-Version"
H_MESSAGE = "Secnode-Message"
H_SIGNATURE = "Secnode-Signature"
H_OCSP = "Secnode-Ocsp"
H_RESPONSE = "Secnode-Response"
H_EXTRA = "Secnode-Extra"
H_WITNESS = "Secnode-Witness"
H_ERROR = "X-Road-Error"

MAX_HEADER_B64 = 16000


class WireError(ValueError):
    """A node-to-node message whose metadata is missing or malformed."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None, what: str) -> bytes:
    if not text:
        raise WireError(f"missing {what}")
    if len(text) > MAX_HEADER_B64:
        raise WireError(f"{what} is too large")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WireError(f"{what} is not valid base64") from exc


def encode_headers(headers: MessageHeaders) -> str:
    """Base64 of canonical JSON of the message headers (identifiers in string form)."""
    data: dict[str, Any] = {f.name: getattr(headers, f.name) for f in fields(headers)}
    data["client"] = str(headers.client)
    data["service"] = str(headers.service)
    raw = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return b64(raw.encode("utf-8"))


def decode_headers(text: str | None) -> MessageHeaders:
    raw = unb64(text, H_MESSAGE)
    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            raise WireError("message headers are not a JSON object")
        data["client"] = parse_client(data["client"])
        data["service"] = ServiceId.parse(data["service"])
        return MessageHeaders(**data)
    except WireError:
        raise
    except (ValueError, KeyError, TypeError, IdentifierError, MessageError) as exc:
        raise WireError(f"malformed message headers: {exc}") from exc


@dataclass(frozen=True)
class ResponseMeta:
    """What the provider node says about the response it signed.

    ``policy`` is the provider's signed policy statement (compact JSON, see
    ``response_digest``); the key is left out when there is none. ``witness`` is the
    provider's ``request_in`` log position, also signed (docs/protocol.md §4.1).
    """

    status: int
    content_type: str | None
    policy: str | None = None
    witness: LogPosition | None = None

    def encode(self) -> str:
        data: dict[str, Any] = {"status": self.status, "content_type": self.content_type}
        if self.policy is not None:
            data["policy"] = self.policy
        if self.witness is not None:
            data["witness"] = self.witness.to_json()
        raw = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return b64(raw.encode("utf-8"))

    @classmethod
    def decode(cls, text: str | None) -> ResponseMeta:
        raw = unb64(text, H_RESPONSE)
        try:
            data = json.loads(raw.decode("utf-8"))
            status = data["status"]
            content_type = data["content_type"]
            policy = data.get("policy")
            witness = data.get("witness")
            position = None if witness is None else LogPosition.from_json(witness)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WireError(f"malformed response metadata: {exc}") from exc
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise WireError("response metadata has an invalid status")
        if content_type is not None and not isinstance(content_type, str):
            raise WireError("response metadata has an invalid content type")
        if policy is not None and not isinstance(policy, str):
            raise WireError("response metadata has an invalid policy statement")
        return cls(status, content_type, policy, position)


def encode_witness(witness: RequestWitness) -> str:
    """``Secnode-Witness``: base64 of the client node's signed ``request_out`` position."""
    return b64(witness.encode().encode("ascii"))


def decode_witness(text: str | None) -> RequestWitness | None:
    """The client node's signed position, None when the header is absent."""
    if not text:
        return None
    raw = unb64(text, H_WITNESS)
    try:
        return RequestWitness.decode(raw.decode("ascii"))
    except (UnicodeDecodeError, WitnessError) as exc:
        raise WireError(f"malformed {H_WITNESS}: {exc}") from exc


@dataclass(frozen=True)
class Extra:
    """Unsigned companions of a REST message: X-Road-Request-Id and the end systems' own
    HTTP headers, which X-Road passes through unmodified (filtered of hop-by-hop and
    X-Road headers). Mutual TLS protects them in transit; they are not signed."""

    request_id: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def for_request(cls, rest_request: Any) -> Extra:
        if rest_request is None:
            return cls()
        return cls(rest_request.request_id, tuple(rest_request.passthrough_headers()))

    def encode(self) -> str:
        raw = json.dumps(
            {"request_id": self.request_id, "headers": list(self.headers)},
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return b64(raw.encode("utf-8"))

    @classmethod
    def decode(cls, text: str | None) -> Extra:
        """Parse and validate the header; a malformed one is a :class:`WireError` (never
        anything else), and no name or value can break the HTTP request it ends up in."""
        if not text:
            return cls()
        raw = unb64(text, H_EXTRA)
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise WireError(f"malformed {H_EXTRA}: not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise WireError(f"malformed {H_EXTRA}: not a JSON object")
        request_id = data.get("request_id")
        if request_id is not None and not _header_value_ok(request_id):
            raise WireError(f"malformed {H_EXTRA}: request_id")
        pairs = data.get("headers", [])
        if not isinstance(pairs, list):
            raise WireError(f"malformed {H_EXTRA}: headers is not a list")
        return cls(request_id, tuple(_header_pair(pair) for pair in pairs))


# RFC 9110 token characters (a header name) and the characters a header value may not hold.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VALUE_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def header_value_ok(value: object) -> bool:
    """May ``value`` travel as an HTTP header value (no CR, LF, NUL, other controls)?"""
    return _header_value_ok(value)


def _header_value_ok(value: object) -> bool:
    return isinstance(value, str) and not _VALUE_FORBIDDEN.search(value)


def _header_pair(pair: object) -> tuple[str, str]:
    """One ``[name, value]`` of ``Secnode-Extra``: a token and a value without CR, LF, NUL
    or other control characters (they would split or smuggle headers downstream)."""
    if not isinstance(pair, list) or len(pair) != 2:
        raise WireError(f"malformed {H_EXTRA}: a header is not a [name, value] pair")
    name, value = pair
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise WireError(f"malformed {H_EXTRA}: header name {str(name)[:64]!r}")
    if not _header_value_ok(value):
        raise WireError(f"malformed {H_EXTRA}: value of header {name!r}")
    return name, value


def check_version(text: str | None) -> None:
    """Refuse a request in a wire version this node does not speak. A request without the
    header is version 1 (the header was added after the first release)."""
    if text is not None and text.strip() != WIRE_VERSION:
        raise WireError(
            f"unsupported {H_VERSION} {text[:32]!r}; this node speaks version {WIRE_VERSION}"
        )
