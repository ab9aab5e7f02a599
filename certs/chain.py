"""Certificate path checks against a set of trusted CA certificates.

Federation CAs are few and shallow (a root, maybe an intermediate), so the path
is built by subject/issuer match and each link is checked with
``verify_directly_issued_by``, validity and CA basic constraints.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509

from certs.names import display_name

MAX_DEPTH = 4


class ChainError(Exception):
    """A certificate does not chain to a trusted CA at the given time."""


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _valid_at(cert: x509.Certificate, when: dt.datetime, what: str) -> None:
    if when < cert.not_valid_before_utc:
        raise ChainError(f"{what} {display_name(cert.subject)} is not yet valid")
    if when > cert.not_valid_after_utc:
        raise ChainError(
            f"{what} {display_name(cert.subject)} expired at {cert.not_valid_after_utc.isoformat()}"
        )


def verify_chain(
    cert: x509.Certificate,
    trusted: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate] = (),
    at: dt.datetime | None = None,
) -> list[x509.Certificate]:
    """Return the path ``[cert, ..., trusted_ca]`` or raise :class:`ChainError`."""
    when = at or dt.datetime.now(dt.UTC)
    _valid_at(cert, when, "certificate")
    path = [cert]
    current = cert
    for _ in range(MAX_DEPTH):
        for ca in trusted:
            if ca.subject == current.issuer and _issued_by(current, ca):
                _valid_at(ca, when, "CA certificate")
                return [*path, ca]
        step = next(
            (
                c
                for c in intermediates
                if c.subject == current.issuer and _is_ca(c) and _issued_by(current, c)
            ),
            None,
        )
        if step is None:
            break
        _valid_at(step, when, "intermediate CA certificate")
        path.append(step)
        current = step
    raise ChainError(
        f"certificate {display_name(cert.subject)} (issuer {display_name(cert.issuer)}) "
        "does not chain to an approved CA"
    )


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if not _is_ca(ca):
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):
        return False
    return True


def find_issuer(
    cert: x509.Certificate, candidates: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    """The candidate that directly issued ``cert``, if any."""
    for ca in candidates:
        if ca.subject == cert.issuer and _issued_by(cert, ca):
            return ca
    return None
