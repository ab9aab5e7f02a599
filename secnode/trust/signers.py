"""Is this signer trusted right now? Chain, member identity and stapled OCSP, cached.

A message's signer certificate and OCSP response travel with it. Checking the
chain and the OCSP signature costs ~200 µs, the same for every message from the
same member within an OCSP period, so results are cached by the exact
(certificate, OCSP response) bytes until the response stops being fresh or the
global configuration changes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs import chain, ocsp, profiles
from secnode.core.cert_member import member_id_of
from secnode.core.identifiers import MemberId


class TrustError(Exception):
    """The signer is not trusted; ``code`` is the X-Road style error code to answer with."""

    def __init__(self, message: str, code: str = "InvalidSignature") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class TrustedSigner:
    member: MemberId
    cert_sha256: str
    ocsp_this_update: dt.datetime
    valid_until: dt.datetime


def check_signer(
    cert: x509.Certificate,
    ocsp_der: bytes,
    claimed: MemberId,
    approved_cas: Sequence[x509.Certificate],
    freshness_seconds: float,
    now: dt.datetime | None = None,
) -> TrustedSigner:
    """Full check of a signer: sign profile, chain to an approved CA, identity, OCSP good+fresh."""
    when = now or dt.datetime.now(dt.UTC)
    try:
        profiles.require_profile(cert, "sign")
        member = member_id_of(cert.subject)
    except profiles.ProfileError as exc:
        raise TrustError(f"signer certificate: {exc}") from exc
    if member != claimed:
        raise TrustError(
            f"signer certificate names member {member}, but the message claims {claimed}"
        )
    try:
        path = chain.verify_chain(cert, approved_cas, at=when)
    except chain.ChainError as exc:
        raise TrustError(str(exc)) from exc
    issuer = path[1]
    if not ocsp_der:
        raise TrustError("no OCSP response was stapled to the signature", "InvalidSignature")
    try:
        status = ocsp.validate_response(ocsp_der, cert, issuer, now=when, max_age=freshness_seconds)
    except ocsp.StaleResponseError as exc:
        raise TrustError(f"stale OCSP response for the signer certificate: {exc}") from exc
    except ocsp.OCSPError as exc:
        raise TrustError(f"invalid OCSP response for the signer certificate: {exc}") from exc
    if status.status != "good":
        reason = f" ({status.revocation_reason})" if status.revocation_reason else ""
        raise TrustError(
            f"signer certificate status is {status.status}{reason}",
            "CertificateRevoked" if status.status == "revoked" else "InvalidSignature",
        )
    fresh_until = status.this_update + dt.timedelta(seconds=freshness_seconds)
    if status.next_update is not None:
        fresh_until = min(fresh_until, status.next_update)
    valid_until = min(fresh_until, cert.not_valid_after_utc)
    der = cert.public_bytes(serialization.Encoding.DER)
    return TrustedSigner(member, hashlib.sha256(der).hexdigest(), status.this_update, valid_until)


class TrustCache:
    """Caches :func:`check_signer` results per (certificate, OCSP response, member)."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._entries: dict[tuple[bytes, bytes, MemberId], TrustedSigner] = {}
        self._max = max_entries
        self._generation: object = None

    def reset_if_changed(self, generation: object) -> None:
        """Drop everything when the global configuration (approved CAs, settings) changes."""
        if generation is not self._generation:
            self._entries.clear()
            self._generation = generation

    def check(
        self,
        cert: x509.Certificate,
        cert_der: bytes,
        ocsp_der: bytes,
        claimed: MemberId,
        approved_cas: Sequence[x509.Certificate],
        freshness_seconds: float,
    ) -> TrustedSigner:
        now = dt.datetime.now(dt.UTC)
        key = (cert_der, ocsp_der, claimed)
        hit = self._entries.get(key)
        if hit is not None and now <= hit.valid_until:
            return hit
        result = check_signer(cert, ocsp_der, claimed, approved_cas, freshness_seconds, now)
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = result
        return result
