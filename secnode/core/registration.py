"""A node's registration request to the central registry: build and parse (pure).

Proof of possession follows X-Road's ``authCertReg`` (pr-mserv §2.3): the exact
request bytes are signed twice, with detached CMS SignedData, once by the node's
auth key (whose certificate is being registered) and once by the owner member's
sign key (whose certificate names the member in ``serialNumber``). The registry
therefore learns that the member vouches for the node and that the node holds
the key of the certificate it registers.

Wire format (``POST /register``, ``Content-Type: application/json``)::

    {"request": b64(BODY), "auth_signature": b64(CMS), "sign_signature": b64(CMS),
     "sign_ocsp": b64(DER OCSP response of the sign certificate)}   # sign_ocsp optional

where BODY is canonical JSON with exactly the keys of :data:`BODY_KEYS`.
The parsing functions are shared with the registry, which is why they live in
the core and raise :class:`RegistrationError` with a one-line reason; the node
sends the request with :func:`secnode.registration_client.submit`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs.cms import sign_detached
from certs.errors import SecnodeError
from certs.keys import Signer
from secnode.core.globalconf import GlobalConfError, parse_time
from secnode.core.identifiers import IdentifierError, NodeId, SubsystemId
from secnode.core.jsonfmt import FormatError, canonical_json, format_time, parse_json_object

REQUEST_TYPE = "secnode-registration/1"
#: A request holds two certificates and two signatures: a few KiB. 64 KiB leaves room for
#: RSA chains and an OCSP response while refusing memory exhaustion early.
MAX_REQUEST_BYTES = 64 * 1024
MAX_SUBSYSTEMS = 100
BODY_KEYS = frozenset(
    {"type", "node", "address", "auth_cert", "sign_cert", "subsystems", "created_at", "nonce"}
)
ENVELOPE_KEYS = frozenset({"request", "auth_signature", "sign_signature", "sign_ocsp"})
# host or host:port; host is a DNS name, IPv4 address or [IPv6] literal.
_ADDRESS = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::(?:[1-9][0-9]{0,4}))?$"
)


class RegistrationError(SecnodeError, ValueError):
    """A registration request is malformed or was refused; the message says why."""

    def __init__(self, message: str, *, code: str = "InvalidRequest", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def check_address(address: str) -> str:
    """A node address is ``host`` or ``host:port`` (no scheme, no path)."""
    if not isinstance(address, str) or len(address) > 300 or not _ADDRESS.match(address):
        raise RegistrationError(
            f"address {address!r} is not host or host:port (e.g. ss1.city.example:5500)"
        )
    port = address.rsplit(":", 1)[1] if re.search(r":\d+$", address) else None
    if port is not None and int(port) > 65535:
        raise RegistrationError(f"address {address!r} has a port above 65535")
    return address


@dataclass(frozen=True)
class RegistrationBody:
    """The signed content of a request, parsed and checked for form (not trust)."""

    node: NodeId
    address: str
    auth_cert: x509.Certificate
    sign_cert: x509.Certificate
    subsystems: tuple[SubsystemId, ...]
    created_at: dt.datetime
    nonce: str


@dataclass(frozen=True)
class Envelope:
    body: bytes
    auth_signature: bytes
    sign_signature: bytes
    sign_ocsp: bytes | None


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def build_body(
    node: NodeId,
    address: str,
    auth_cert: x509.Certificate,
    sign_cert: x509.Certificate,
    subsystems: Sequence[SubsystemId] = (),
    *,
    at: dt.datetime | None = None,
    nonce: str | None = None,
) -> bytes:
    """The canonical request bytes that both keys sign."""
    for sub in subsystems:
        if sub.member != node.member:
            raise RegistrationError(f"subsystem {sub} does not belong to node owner {node.member}")
    return canonical_json(
        {
            "type": REQUEST_TYPE,
            "node": str(node),
            "address": check_address(address),
            "auth_cert": _pem(auth_cert),
            "sign_cert": _pem(sign_cert),
            "subsystems": sorted(str(s) for s in subsystems),
            "created_at": format_time(at or dt.datetime.now(dt.UTC)),
            "nonce": nonce or os.urandom(16).hex(),
        }
    )


def build_envelope(
    body: bytes,
    auth_cert: x509.Certificate,
    auth_signer: Signer,
    sign_cert: x509.Certificate,
    sign_signer: Signer,
    sign_ocsp: bytes | None = None,
) -> bytes:
    """Sign ``body`` with both keys; returns the JSON to POST."""
    envelope: dict[str, str] = {
        "request": base64.b64encode(body).decode("ascii"),
        "auth_signature": base64.b64encode(sign_detached(body, auth_cert, auth_signer)).decode(),
        "sign_signature": base64.b64encode(sign_detached(body, sign_cert, sign_signer)).decode(),
    }
    if sign_ocsp is not None:
        envelope["sign_ocsp"] = base64.b64encode(sign_ocsp).decode("ascii")
    return canonical_json(envelope)


def build_request(
    node: NodeId,
    address: str,
    auth_cert: x509.Certificate,
    auth_signer: Signer,
    sign_cert: x509.Certificate,
    sign_signer: Signer,
    subsystems: Sequence[SubsystemId] = (),
    *,
    sign_ocsp: bytes | None = None,
    at: dt.datetime | None = None,
) -> bytes:
    """:func:`build_body` + :func:`build_envelope` in one call."""
    body = build_body(node, address, auth_cert, sign_cert, subsystems, at=at)
    return build_envelope(body, auth_cert, auth_signer, sign_cert, sign_signer, sign_ocsp)


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise RegistrationError(f"'{what}' must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RegistrationError(f"'{what}' is not valid base64") from exc


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        return parse_json_object(data, what)
    except FormatError as exc:
        raise RegistrationError(str(exc)) from exc


def parse_envelope(data: bytes) -> Envelope:
    """Split a POSTed envelope; refuses oversize, non-JSON and unknown or missing fields."""
    if len(data) > MAX_REQUEST_BYTES:
        raise RegistrationError(
            f"request is {len(data)} bytes; the limit is {MAX_REQUEST_BYTES}", status=413
        )
    obj = _json_object(data, "registration request")
    unknown = sorted(set(obj) - ENVELOPE_KEYS)
    if unknown:
        raise RegistrationError(f"unknown field(s) in registration request: {', '.join(unknown)}")
    missing = sorted(ENVELOPE_KEYS - {"sign_ocsp"} - set(obj))
    if missing:
        raise RegistrationError(f"registration request lacks {', '.join(missing)}")
    ocsp = obj.get("sign_ocsp")
    return Envelope(
        body=_b64(obj["request"], "request"),
        auth_signature=_b64(obj["auth_signature"], "auth_signature"),
        sign_signature=_b64(obj["sign_signature"], "sign_signature"),
        sign_ocsp=None if ocsp is None else _b64(ocsp, "sign_ocsp"),
    )


def _cert(value: Any, what: str) -> x509.Certificate:
    if not isinstance(value, str):
        raise RegistrationError(f"'{what}' must be a PEM certificate string")
    try:
        return x509.load_pem_x509_certificate(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise RegistrationError(f"'{what}' is not a PEM certificate") from exc


def parse_body(body: bytes) -> RegistrationBody:
    """Parse the signed request bytes strictly (identifiers, address, certificates)."""
    obj = _json_object(body, "registration request body")
    keys = set(obj)
    if keys != BODY_KEYS:
        detail = []
        if keys - BODY_KEYS:
            detail.append("unknown " + ", ".join(sorted(keys - BODY_KEYS)))
        if BODY_KEYS - keys:
            detail.append("missing " + ", ".join(sorted(BODY_KEYS - keys)))
        raise RegistrationError(f"registration request body fields: {'; '.join(detail)}")
    if obj["type"] != REQUEST_TYPE:
        raise RegistrationError(f"request type {obj['type']!r} is not {REQUEST_TYPE}")
    try:
        node = NodeId.parse(obj["node"])
        subs_raw = obj["subsystems"]
        if not isinstance(subs_raw, list) or len(subs_raw) > MAX_SUBSYSTEMS:
            raise RegistrationError(f"'subsystems' must be a list of at most {MAX_SUBSYSTEMS}")
        subsystems = tuple(SubsystemId.parse(s) for s in subs_raw)
    except IdentifierError as exc:
        raise RegistrationError(f"bad identifier: {exc}", code="InvalidIdentifier") from exc
    for sub in subsystems:
        if sub.member != node.member:
            raise RegistrationError(
                f"subsystem {sub} does not belong to node owner {node.member}",
                code="InvalidIdentifier",
            )
    if len(set(subsystems)) != len(subsystems):
        raise RegistrationError("'subsystems' lists a subsystem twice")
    nonce = obj["nonce"]
    if not isinstance(nonce, str) or not re.fullmatch(r"[0-9a-f]{16,64}", nonce):
        raise RegistrationError("'nonce' must be 16 to 64 lower-case hex digits")
    try:
        created_at = parse_time(obj["created_at"], "created_at")
    except GlobalConfError as exc:
        raise RegistrationError(str(exc)) from exc
    return RegistrationBody(
        node=node,
        address=check_address(obj["address"]),
        auth_cert=_cert(obj["auth_cert"], "auth_cert"),
        sign_cert=_cert(obj["sign_cert"], "sign_cert"),
        subsystems=subsystems,
        created_at=created_at,
        nonce=nonce,
    )
