"""Canonical JSON, strict field readers, time text and certificate hashes: the shared formats.

One module for every signed JSON document in secnode (global configuration,
registration requests, message-log records, batches and manifests), so that
there is one canonical byte form, one strict reader kit and one spelling of a
time or a certificate hash.

Hashes and signatures in the log are computed over JSON text, so the text must
be reproducible byte for byte by any implementation, not just this one. The
encoding is the RFC 8785 (JCS) form restricted to what the log uses: objects
with ASCII keys sorted by code point, arrays, strings, integers with
``|n| < 2**53``, ``true``/``false``/``null``; no floats, no whitespace, UTF-8
output, only ``"`` ``\\`` and control characters escaped. For that subset
``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
produces exactly the JCS bytes, which is why it is used here and not a
hand-written serialiser.

The readers (``get_str`` and friends) exist because every parser here is
strict: unknown keys, missing keys and wrong types are errors, never silently
defaulted, since a lenient parser is where forged evidence slips in.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs.errors import SecnodeError

MAX_SAFE_INT = 2**53 - 1

_HEX32 = re.compile(r"^[0-9a-f]{64}$")


class FormatError(SecnodeError, ValueError):
    """A JSON document (record, batch, manifest, configuration, request) is malformed."""


def _check(value: Any, where: str) -> None:
    """Refuse anything outside the canonical subset (floats, huge ints, odd keys)."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INT:
            raise FormatError(f"{where}: integer {value} is outside the canonical range")
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise FormatError(f"{where}: string is not valid Unicode") from exc
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or not key.isascii():
                raise FormatError(f"{where}: object keys must be ASCII strings")
            _check(item, f"{where}.{key}")
        return
    raise FormatError(f"{where}: {type(value).__name__} is not allowed in canonical JSON")


def canonical_json(value: Any) -> bytes:
    """The canonical UTF-8 bytes of ``value`` (see module docstring for the rules)."""
    _check(value, "$")
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be an object; duplicate keys are refused."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise FormatError(f"{what}: duplicate key {key!r}")
            result[key] = value
        return result

    def no_floats(text: str) -> Any:
        raise FormatError(f"{what}: floating-point number {text} is not allowed")

    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=no_duplicates,
            parse_float=no_floats,
            parse_constant=no_floats,
        )
    except FormatError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FormatError(f"{what}: not valid JSON (UTF-8): {exc}") from exc
    if not isinstance(value, dict):
        raise FormatError(f"{what}: not a JSON object")
    return value


def require_keys(obj: Mapping[str, Any], keys: frozenset[str], what: str) -> None:
    """Exactly ``keys``: a missing or an unknown key is an error."""
    present = set(obj)
    missing = sorted(keys - present)
    unknown = sorted(present - keys)
    if missing:
        raise FormatError(f"{what}: missing field(s) {', '.join(missing)}")
    if unknown:
        raise FormatError(f"{what}: unknown field(s) {', '.join(unknown)}")


def get_str(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise FormatError(f"{what}: {key} must be a string")
    return value


def get_opt_str(obj: Mapping[str, Any], key: str, what: str) -> str | None:
    value = obj[key]
    if value is not None and not isinstance(value, str):
        raise FormatError(f"{what}: {key} must be a string or null")
    return value


def get_int(obj: Mapping[str, Any], key: str, what: str) -> int:
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise FormatError(f"{what}: {key} must be an integer")
    return value


def get_opt_int(obj: Mapping[str, Any], key: str, what: str) -> int | None:
    value = obj[key]
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise FormatError(f"{what}: {key} must be an integer or null")
    return value


def hex32(data: bytes) -> str:
    """A SHA-256 value as 64 lowercase hex digits (what ``sha256sum`` prints)."""
    if len(data) != 32:
        raise FormatError(f"expected 32 bytes, got {len(data)}")
    return data.hex()


def from_hex32(text: object, what: str) -> bytes:
    if not isinstance(text, str) or not _HEX32.match(text):
        raise FormatError(f"{what}: expected 64 lowercase hex digits")
    return bytes.fromhex(text)


def opt_from_hex32(text: object, what: str) -> bytes | None:
    return None if text is None else from_hex32(text, what)


def b64(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648 §4); binascii directly, without the base64
    module's wrapper (records are rendered on the message path)."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def from_b64(text: object, what: str) -> bytes:
    """Strict base64: the canonical encoding only, so one value has one spelling."""
    if not isinstance(text, str):
        raise FormatError(f"{what}: expected a base64 string")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise FormatError(f"{what}: invalid base64: {exc}") from exc
    if b64(data) != text:
        raise FormatError(f"{what}: base64 is not in canonical form")
    return data


def opt_from_b64(text: object, what: str) -> bytes | None:
    return None if text is None else from_b64(text, what)


# ----- time text -----------------------------------------------------------------------------
_TIME_S = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_TIME_US = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def format_time(value: dt.datetime) -> str:
    """RFC 3339 UTC with second precision, e.g. ``2026-04-01T09:00:00Z`` (configuration,
    registration, reports: what people read)."""
    return value.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: object, what: str) -> dt.datetime:
    """The inverse of :func:`format_time`; anything else is a :class:`FormatError`."""
    if not isinstance(text, str) or not _TIME_S.match(text):
        raise FormatError(f"{what} {text!r} is not an RFC 3339 UTC time")
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def format_time_us(value: dt.datetime) -> str:
    """UTC, microseconds always present: ``2026-04-01T09:30:00.000000Z`` (log records, whose
    order within a second matters). ``value`` must be timezone-aware."""
    if value.tzinfo is dt.UTC:  # the node's own clock: "...+00:00" -> "...Z"
        return value.isoformat(timespec="microseconds")[:-6] + "Z"
    if value.tzinfo is None:
        raise FormatError("time must be timezone-aware")
    # isoformat, not strftime: same text (4-digit year), several times faster on the message path
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time_us(text: object, what: str) -> dt.datetime:
    """The inverse of :func:`format_time_us`."""
    if not isinstance(text, str) or not _TIME_US.match(text):
        raise FormatError(f"{what}: time must look like 2026-04-01T09:30:00.000000Z")
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    except ValueError as exc:
        raise FormatError(f"{what}: invalid time {text!r}") from exc


# ----- certificates ---------------------------------------------------------------------------
def cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def cert_sha256(cert: x509.Certificate) -> bytes:
    """SHA-256 of the DER certificate (how archives and records name a certificate)."""
    return hashlib.sha256(cert_der(cert)).digest()


def cert_sha256_hex(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the DER certificate (how auth certificates are registered)."""
    return cert_sha256(cert).hex()
