"""Canonical message digests: fixed vectors, an independent re-implementation of the
byte encoding documented in docs/protocol.md, and binding of every field."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secnode.core import message
from secnode.core.identifiers import MemberId, ServiceId, SubsystemId
from secnode.core.message import (
    MessageError,
    MessageHeaders,
    request_digest,
    request_digest_input,
    response_digest,
)
from secnode.core.witness import LogPosition

REST_HEADERS = MessageHeaders(
    protocol="rest",
    client=SubsystemId("JP", "GOV", "372013", "welfare"),
    service=ServiceId("JP", "GOV", "072028", "tax", "income"),
    message_id="0b6f6d39-3b6c-4c2e-9d59-2f1b1c7c0a11",
    user_id="JP1234567890",
    purpose="child-allowance-eligibility",
    legal_basis="consent",
    data_subject="JP-住民-0001",
    agreement="DSA-1;v=3",
    consent_id="CR-1",
    data_items="name,address",
    rest_method="POST",
    rest_path="/v1/people%20list",
    rest_query="year=2024",
    content_type="application/json",
)
REST_BODY_SHA256 = hashlib.sha256(b'{"id":"A-17"}').digest()
RESPONSE_BODY_SHA256 = hashlib.sha256(b'{"income":1}').digest()
RESPONSE_POLICY = '{"decision":"ALLOW","reason":"OK_CONSENT"}'

SOAP_HEADERS = MessageHeaders(
    protocol="soap",
    client=MemberId("EE", "GOV", "MEMBER1"),
    service=ServiceId("EE", "GOV", "MEMBER2", "SUBSYSTEM2", "getRandom", "v1"),
    message_id="4894e35d-bf0f-44a6-867a-8e51f1daa7e0",
    user_id="EE12345678901",
    issue="12345",
    content_type="text/xml; charset=utf-8",
)
SOAP_BODY_SHA256 = hashlib.sha256(b"<SOAP-ENV:Envelope/>").digest()

# Golden vectors: also printed in docs/protocol.md. Changing them breaks every
# signature and log record already made; bump the domain string instead.
REST_REQUEST_DIGEST = "8bd01da609b8fc7fff34a50f179c8a2ccab26729e26da30c7675e075c907bb4b"
REST_RESPONSE_DIGEST = "011773203ecccf56547cdd64be4110927f19e16ef4672856f22a6c8755ddab84"
REST_RESPONSE_POLICY_DIGEST = "4acd79233cd41c8251046a149567f6a45b7470de3869f8c265e5c7668b5c3788"
SOAP_REQUEST_DIGEST = "9812664557e93ff9c17a4bc1097d7047ecaadabd64e790ea40f04e2bed82e0bb"
REST_RESPONSE_WITNESS_DIGEST = "7d85c4e9b28494ebaaf63e3789ca61e2225052e77e8d59721e7a35793310f8a6"
SOAP_RESPONSE_DIGEST = "2e20f18c0d11c2eabec5fa462dc695a0a0ecc97046c9f795b515c9d70efb8c01"


#: The provider's request_in position (docs/protocol.md §4.1) and its signed text form.
WITNESS = LogPosition("TAKAMATSU-1#0a1b2c3d", 7, hashlib.sha256(b"request_in").digest())
WITNESS_TEXT = (
    '{"chain_id":"TAKAMATSU-1#0a1b2c3d","record_hash":'
    '"83b88c3f2aacd5f922d7a99ae117a58cc4e7ac0c89ad3ef11374f21b8bdb5588","seq":7}'
)


# --------------------------------------------------------------------------
# An independent encoder written from docs/protocol.md, not from message.py
# --------------------------------------------------------------------------


def ref_field(name: str, value: str | bytes | None) -> bytes:
    out = bytes([len(name)]) + name.encode("ascii")
    if value is None:
        return out + b"\x00"
    raw, tag = (value.encode("utf-8"), b"\x01") if isinstance(value, str) else (value, b"\x02")
    return out + tag + struct.pack(">I", len(raw)) + raw


def ref_header_fields(h: MessageHeaders) -> list[tuple[str, str | bytes | None]]:
    return [
        ("protocol", h.protocol),
        ("client_type", "SUBSYSTEM" if isinstance(h.client, SubsystemId) else "MEMBER"),
        ("client", "/".join(h.client.parts())),
        ("service", "/".join(h.service.parts())),
        ("message_id", h.message_id),
        ("user_id", h.user_id),
        ("issue", h.issue),
        ("purpose", h.purpose),
        ("legal_basis", h.legal_basis),
        ("data_subject", h.data_subject),
        ("agreement", h.agreement),
        ("consent_id", h.consent_id),
        ("data_items", h.data_items),
        ("evidence", h.evidence),
        ("recipient_country", h.recipient_country),
        ("recurring", h.recurring),
        ("data_from", h.data_from),
        ("rest_method", h.rest_method),
        ("rest_path", h.rest_path),
        ("rest_query", h.rest_query),
    ]


def ref_request(h: MessageHeaders, body: bytes) -> bytes:
    domain = b"secnode/request-digest/v2"
    fields = [*ref_header_fields(h), ("content_type", h.content_type), ("body_sha256", body)]
    data = bytes([len(domain)]) + domain + b"".join(ref_field(n, v) for n, v in fields)
    return hashlib.sha256(data).digest()


def ref_response(
    h: MessageHeaders,
    req: bytes,
    status: int,
    ctype: str | None,
    body: bytes,
    policy: str | None = None,
    witness: str | None = None,
) -> bytes:
    domain = b"secnode/response-digest/v3"
    fields = [
        *ref_header_fields(h),
        ("request_digest", req),
        ("status", str(status)),
        ("content_type", ctype),
        ("policy", policy),
        ("body_sha256", body),
        ("witness", witness),
    ]
    data = bytes([len(domain)]) + domain + b"".join(ref_field(n, v) for n, v in fields)
    return hashlib.sha256(data).digest()


# --------------------------------------------------------------------------
# Vectors
# --------------------------------------------------------------------------


def test_rest_vectors() -> None:
    req = request_digest(REST_HEADERS, REST_BODY_SHA256)
    assert req.hex() == REST_REQUEST_DIGEST
    assert req == ref_request(REST_HEADERS, REST_BODY_SHA256)
    resp = response_digest(REST_HEADERS, req, 200, "application/json", RESPONSE_BODY_SHA256)
    assert resp.hex() == REST_RESPONSE_DIGEST
    assert resp == ref_response(REST_HEADERS, req, 200, "application/json", RESPONSE_BODY_SHA256)
    with_policy = response_digest(
        REST_HEADERS, req, 200, "application/json", RESPONSE_BODY_SHA256, RESPONSE_POLICY
    )
    assert with_policy.hex() == REST_RESPONSE_POLICY_DIGEST
    assert with_policy == ref_response(
        REST_HEADERS, req, 200, "application/json", RESPONSE_BODY_SHA256, RESPONSE_POLICY
    )
    witnessed = response_digest(
        REST_HEADERS, req, 200, "application/json", RESPONSE_BODY_SHA256, None, WITNESS
    )
    assert witnessed.hex() == REST_RESPONSE_WITNESS_DIGEST
    assert WITNESS.encode() == WITNESS_TEXT
    assert witnessed == ref_response(
        REST_HEADERS, req, 200, "application/json", RESPONSE_BODY_SHA256, None, WITNESS_TEXT
    )


def test_soap_vectors() -> None:
    req = request_digest(SOAP_HEADERS, SOAP_BODY_SHA256)
    assert req.hex() == SOAP_REQUEST_DIGEST
    empty = hashlib.sha256(b"").digest()
    resp = response_digest(SOAP_HEADERS, req, 500, None, empty)
    assert resp.hex() == SOAP_RESPONSE_DIGEST
    assert resp == ref_response(SOAP_HEADERS, req, 500, None, empty)


def test_encoding_prefix_is_as_documented() -> None:
    data = request_digest_input(REST_HEADERS, REST_BODY_SHA256)
    assert data.startswith(b"\x19secnode/request-digest/v2\x08protocol\x01\x00\x00\x00\x04rest")
    assert b"\x05issue\x00" in data  # absent field: name then 0x00, no length
    assert data.endswith(b"\x0bbody_sha256\x02\x00\x00\x00\x20" + REST_BODY_SHA256)
    assert "JP-住民-0001".encode() in data


def test_request_and_response_domains_differ() -> None:
    # A request digest can never be replayed as a response digest and vice versa.
    assert len({message.REQUEST_DOMAIN, message.RESPONSE_DOMAIN}) == 2


# --------------------------------------------------------------------------
# Every bound field changes the digest
# --------------------------------------------------------------------------

part = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._",
    min_size=1,
    max_size=12,
)
text = st.text(
    alphabet=st.characters(
        min_codepoint=0x20, max_codepoint=0x2FFF, codec="utf-8", exclude_characters="\x7f"
    ),
    min_size=1,
    max_size=40,
)
optional_text = st.none() | text
clients = st.builds(SubsystemId, part, part, part, part) | st.builds(MemberId, part, part, part)
services = st.builds(ServiceId, part, part, part, part, part, st.none() | part)


@st.composite
def headers(draw: st.DrawFn) -> MessageHeaders:
    protocol = draw(st.sampled_from(["soap", "rest"]))
    rest_fields: dict[str, Any] = {}
    if protocol == "rest":
        rest_fields = {
            "rest_method": draw(st.sampled_from(sorted(message.REST_METHODS))),
            "rest_path": draw(st.sampled_from(["", "/", "/a", "/a/b%20c"])),
            "rest_query": draw(st.none() | st.sampled_from(["", "a=1", "a=1&b=2"])),
        }
    return MessageHeaders(
        protocol=protocol,  # type: ignore[arg-type]
        client=draw(clients),
        service=draw(services),
        message_id=draw(text),
        user_id=draw(optional_text),
        issue=draw(optional_text),
        purpose=draw(optional_text),
        legal_basis=draw(optional_text),
        data_subject=draw(optional_text),
        **{attr: draw(optional_text) for attr, _, _ in message.POLICY_EXTENSIONS},
        content_type=draw(optional_text),
        **rest_fields,
    )


def _mutations(h: MessageHeaders, response: bool = False) -> list[MessageHeaders]:
    """One changed copy per bound field. The request's content type enters a
    response digest only through the request digest, so it is skipped there."""
    out = []
    for f in dataclasses.fields(h):
        value = getattr(h, f.name)
        if f.name == "protocol" or (response and f.name == "content_type"):
            continue  # protocol: covered with the REST fields and test_soap_and_rest_...
        if f.name == "client":
            new: Any = (
                SubsystemId(value.instance, value.member_class, value.code, "x")
                if isinstance(value, MemberId)
                else MemberId(value.instance, value.member_class, value.code)
            )
        elif f.name == "service":
            new = dataclasses.replace(value, service=value.service + "x")
        elif f.name == "rest_method":
            if value is None:
                continue
            new = "PUT" if value != "PUT" else "GET"
        elif f.name == "rest_path":
            if value is None:
                continue
            new = value + "/z" if value else "/z"
        elif f.name == "rest_query":
            if h.protocol != "rest":
                continue
            new = None if value is not None else "q=1"
        else:
            new = None if value is not None else "v"
            if f.name == "message_id":
                new = value + "x"
        out.append(dataclasses.replace(h, **{f.name: new}))
    return out


@settings(max_examples=120, deadline=None)
@given(h=headers(), body=st.binary(min_size=32, max_size=32))
def test_changing_any_request_field_changes_the_digest(h: MessageHeaders, body: bytes) -> None:
    base = request_digest(h, body)
    assert base == ref_request(h, body)
    for changed in _mutations(h):
        assert request_digest(changed, body) != base, changed
    flipped = bytes([body[0] ^ 1]) + body[1:]
    assert request_digest(h, flipped) != base


@settings(max_examples=80, deadline=None)
@given(
    h=headers(),
    req=st.binary(min_size=32, max_size=32),
    status=st.integers(100, 599),
    ctype=optional_text,
    body=st.binary(min_size=32, max_size=32),
    policy=optional_text,
)
def test_changing_any_response_input_changes_the_digest(
    h: MessageHeaders,
    req: bytes,
    status: int,
    ctype: str | None,
    body: bytes,
    policy: str | None,
) -> None:
    base = response_digest(h, req, status, ctype, body, policy)
    assert base == ref_response(h, req, status, ctype, body, policy)
    assert response_digest(h, req, status, ctype, body, None if policy else "{}") != base
    for changed in _mutations(h, response=True):
        assert response_digest(changed, req, status, ctype, body, policy) != base
    flip = bytes([req[0] ^ 1]) + req[1:]
    assert response_digest(h, flip, status, ctype, body, policy) != base
    assert response_digest(h, req, 100 + (status - 99) % 500, ctype, body, policy) != base
    assert response_digest(h, req, status, None if ctype else "text/plain", body, policy) != base
    other = bytes(32) if any(body) else b"\x01" * 32
    assert response_digest(h, req, status, ctype, other, policy) != base


@settings(max_examples=80, deadline=None)
@given(a=optional_text, b=optional_text)
def test_no_ambiguity_between_adjacent_fields(a: str | None, b: str | None) -> None:
    """Moving text from one field to its neighbour, or making a field absent instead
    of empty-ish, never gives the same encoding (length prefixes and presence tags)."""
    h1 = dataclasses.replace(SOAP_HEADERS, purpose=a, legal_basis=b)
    joined = (a or "") + (b or "")
    h2 = dataclasses.replace(SOAP_HEADERS, purpose=joined or None, legal_basis=None)
    if (a, b) != (h2.purpose, h2.legal_basis):
        assert request_digest(h1, SOAP_BODY_SHA256) != request_digest(h2, SOAP_BODY_SHA256)


def test_soap_and_rest_same_ids_differ() -> None:
    as_rest = dataclasses.replace(SOAP_HEADERS, protocol="rest", rest_method="POST", rest_path="")
    assert request_digest(as_rest, SOAP_BODY_SHA256) != request_digest(
        SOAP_HEADERS, SOAP_BODY_SHA256
    )


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"protocol": "grpc"},
        {"message_id": ""},
        {"message_id": "x" * 256},
        {"user_id": "a\nb"},
        {"purpose": "x" * 1025},
        {"rest_method": "POST"},  # SOAP with REST fields
        {"client": "JP/GOV/1"},
        {"service": SubsystemId("JP", "GOV", "1", "a")},
    ],
)
def test_invalid_headers_refused(changes: dict[str, Any]) -> None:
    refusals = {
        "protocol": r"^protocol must be 'soap' or 'rest'",
        "message_id": r"^message id is (empty|longer than 255 characters)",
        "user_id": r"^user id contains control characters",
        "purpose": r"^purpose is longer than 1024 characters",
        "rest_method": r"^SOAP message must not carry REST method",
        "client": r"^client must be a MemberId or SubsystemId",
        "service": r"^service must be a ServiceId",
    }
    with pytest.raises(MessageError, match=refusals[next(iter(changes))]):
        dataclasses.replace(SOAP_HEADERS, **changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"rest_method": "CONNECT"},
        {"rest_path": None},
        {"rest_path": "no-slash"},
        {"rest_query": "a\r\nb"},
    ],
)
def test_invalid_rest_headers_refused(changes: dict[str, Any]) -> None:
    refusals = {
        "rest_method": r"^unsupported REST method 'CONNECT'",
        "rest_path": r"(needs rest_path|rest_path must be empty or start with '/')",
        "rest_query": r"^rest query contains control characters",
    }
    with pytest.raises(MessageError, match=refusals[next(iter(changes))]):
        dataclasses.replace(REST_HEADERS, **changes)


def test_digest_inputs_checked() -> None:
    with pytest.raises(MessageError, match=r"body_sha256 must be 32 bytes"):
        request_digest(REST_HEADERS, b"short")
    with pytest.raises(MessageError, match=r"request_digest must be 32 bytes"):
        response_digest(REST_HEADERS, b"short", 200, None, REST_BODY_SHA256)
    req = request_digest(REST_HEADERS, REST_BODY_SHA256)
    for status in (99, 600, True):
        with pytest.raises(
            MessageError, match=rf"^status must be an HTTP status code, not {status}"
        ):
            response_digest(REST_HEADERS, req, status, None, REST_BODY_SHA256)
    with pytest.raises(MessageError, match=r"content type contains control characters"):
        response_digest(REST_HEADERS, req, 200, "a\x00b", REST_BODY_SHA256)


def test_headers_are_frozen() -> None:
    with pytest.raises(
        dataclasses.FrozenInstanceError, match=r"cannot assign to field 'message_id'"
    ):
        REST_HEADERS.message_id = "other"  # type: ignore[misc]
