"""OCSP (RFC 6960) core: request building, response validation and the responder logic.

Pure: no aiohttp and no files. The HTTP edges are :mod:`certs.ocsp_server` and
:mod:`certs.ocsp_client`; the offline verifier imports this module directly.
Time is always a parameter (``now``) so checks can be replayed at any moment.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs.names import display_name

StatusName = Literal["good", "revoked", "unknown"]

#: Clock skew tolerated between responder and relying party (RFC 5019 §4 suggests minutes).
CLOCK_SKEW = dt.timedelta(minutes=5)
#: RFC 8954 §2.1: a nonce is 1..32 octets; longer ones are refused as malformed.
MAX_NONCE_LEN = 32
NONCE_LEN = 32


class OCSPError(Exception):
    """An OCSP response cannot be relied on; the message says what was wrong."""


class OCSPResponseStatusError(OCSPError):
    """The responder answered with an error status instead of a signed response."""


class UnauthorisedResponderError(OCSPError):
    """The response is signed by someone not entitled to speak for the issuer."""


class OCSPSignatureError(OCSPError):
    """The signature over tbsResponseData does not verify."""


class CertIdMismatchError(OCSPError):
    """The response is about a different certificate than the one asked about."""


class NonceMismatchError(OCSPError):
    """The response does not echo the nonce we sent (possible replay)."""


class StaleResponseError(OCSPError):
    """The response is too old, expired, or dated in the future."""


@dataclass(frozen=True)
class OCSPStatus:
    """A validated answer for one certificate."""

    status: StatusName
    this_update: dt.datetime
    next_update: dt.datetime | None
    produced_at: dt.datetime
    revocation_time: dt.datetime | None = None
    #: RFC 5280 reason name, e.g. ``keyCompromise`` (None when the responder gave none).
    revocation_reason: str | None = None
    #: The DER response exactly as received, for stapling and the message log.
    raw: bytes = field(default=b"", repr=False)


# ----- CertID helpers -------------------------------------------------------------------
def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def public_key_bits(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING value without its unused-bits octet (RFC 6960 §4.1.1)."""
    spki = _asn1_cert(cert)["tbs_certificate"]["subject_public_key_info"]
    return bytes(spki["public_key"].contents[1:])


def cert_id_hashes(
    issuer: x509.Certificate, algorithm: hashes.HashAlgorithm
) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of ``issuer`` under ``algorithm``."""
    name_der = _asn1_cert(issuer).subject.dump()
    return (
        hashlib.new(algorithm.name, name_der).digest(),
        hashlib.new(algorithm.name, public_key_bits(issuer)).digest(),
    )


def _same_cert(a: x509.Certificate, b: x509.Certificate) -> bool:
    return a.public_bytes(serialization.Encoding.DER) == b.public_bytes(serialization.Encoding.DER)


def _describe(cert: x509.Certificate) -> str:
    return f"{display_name(cert.subject)} (serial {cert.serial_number:X})"


# ----- client side -----------------------------------------------------------------------
def build_request(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    nonce: bool = True,
    algorithm: hashes.HashAlgorithm | None = None,
) -> tuple[bytes, bytes | None]:
    """A DER OCSPRequest for ``cert`` and the nonce it carries (None without one).

    SHA-256 CertIDs by default; pass ``hashes.SHA1()`` for responders that only
    know SHA-1 (RFC 5019 profile).
    """
    if cert.issuer != issuer.subject:
        raise OCSPError(
            f"certificate {_describe(cert)} was issued by {display_name(cert.issuer)}, "
            f"not by {display_name(issuer.subject)}"
        )
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm or hashes.SHA256())
    value = os.urandom(NONCE_LEN) if nonce else None
    if value is not None:
        builder = builder.add_extension(x509.OCSPNonce(value), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER), value


def _nonce_of(extensions: x509.Extensions) -> bytes | None:
    try:
        return extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


def _matches_responder_id(resp: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if resp.responder_name is not None:
        return resp.responder_name == cert.subject
    key_hash = resp.responder_key_hash
    return key_hash is not None and hashlib.sha1(public_key_bits(cert)).digest() == key_hash


def _has_ocsp_signing(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.OCSP_SIGNING in eku


def _authorise_responder(
    resp: ocsp.OCSPResponse,
    issuer: x509.Certificate,
    trusted: Sequence[x509.Certificate],
) -> x509.Certificate:
    """Find the signer and check RFC 6960 §4.2.2.2: issuer itself, local trust, or delegate."""
    candidates = [issuer, *trusted, *resp.certificates]
    signer = next((c for c in candidates if _matches_responder_id(resp, c)), None)
    if signer is None:
        named = (
            display_name(resp.responder_name)
            if resp.responder_name is not None
            else f"key hash {(resp.responder_key_hash or b'').hex()}"
        )
        raise UnauthorisedResponderError(
            f"response signed by an unauthorised responder: {named} is neither the issuer "
            f"{display_name(issuer.subject)} nor a certificate included in the response"
        )
    if _same_cert(signer, issuer) or any(_same_cert(signer, t) for t in trusted):
        return signer
    prefix = f"response signed by an unauthorised responder {_describe(signer)}"
    if signer.issuer != issuer.subject:
        raise UnauthorisedResponderError(
            f"{prefix}: it was issued by {display_name(signer.issuer)}, not by the "
            f"certificate's issuer {display_name(issuer.subject)}"
        )
    try:
        signer.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise UnauthorisedResponderError(
            f"{prefix}: its certificate is not signed by {display_name(issuer.subject)}"
        ) from exc
    if not _has_ocsp_signing(signer):
        # RFC 6960 §4.2.2.2: a delegated responder MUST carry id-kp-OCSPSigning.
        raise UnauthorisedResponderError(f"{prefix}: it lacks the OCSPSigning extended key usage")
    return signer


def _check_delegate_validity(signer: x509.Certificate, now: dt.datetime) -> None:
    # The delegate carries id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1), so its
    # validity period is the only limit on it.
    if not signer.not_valid_before_utc <= now <= signer.not_valid_after_utc:
        raise UnauthorisedResponderError(
            f"response signed by an unauthorised responder {_describe(signer)}: its "
            f"certificate is not valid at {now.isoformat()} (valid "
            f"{signer.not_valid_before_utc.isoformat()} .. "
            f"{signer.not_valid_after_utc.isoformat()})"
        )


def _verify_signature(resp: ocsp.OCSPResponse, signer: x509.Certificate) -> None:
    key = signer.public_key()
    algorithm = resp.signature_hash_algorithm
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(algorithm))
        elif isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(resp.signature, resp.tbs_response_bytes, padding.PKCS1v15(), algorithm)
        else:
            raise OCSPSignatureError(
                f"signature does not verify: unsupported key or algorithm "
                f"{resp.signature_algorithm_oid.dotted_string}"
            )
    except InvalidSignature as exc:
        raise OCSPSignatureError(
            f"signature does not verify with the key of responder {_describe(signer)}"
        ) from exc


def _single_for(
    resp: ocsp.OCSPResponse, cert: x509.Certificate, issuer: x509.Certificate
) -> ocsp.OCSPSingleResponse:
    seen: list[str] = []
    for single in resp.responses:
        try:
            algorithm = single.hash_algorithm
        except UnsupportedAlgorithm:
            continue
        name_hash, key_hash = cert_id_hashes(issuer, algorithm)
        if (
            single.serial_number == cert.serial_number
            and single.issuer_name_hash == name_hash
            and single.issuer_key_hash == key_hash
        ):
            return single
        seen.append(f"serial {single.serial_number:X}")
    raise CertIdMismatchError(
        f"response is for another certificate ({', '.join(seen) or 'no usable CertID'}), "
        f"not for serial {cert.serial_number:X} issued by {display_name(issuer.subject)}"
    )


def _check_freshness(
    this_update: dt.datetime,
    next_update: dt.datetime | None,
    now: dt.datetime,
    max_age: float | None,
) -> None:
    if this_update > now + CLOCK_SKEW:
        raise StaleResponseError(
            f"response thisUpdate {this_update.isoformat()} is in the future "
            f"(now {now.isoformat()}, allowed skew {int(CLOCK_SKEW.total_seconds())} s)"
        )
    if max_age is not None and (now - this_update).total_seconds() > max_age:
        raise StaleResponseError(
            f"response is stale: thisUpdate {this_update.isoformat()} older than {max_age:g} s "
            f"at {now.isoformat()}"
        )
    if next_update is not None and now > next_update:
        raise StaleResponseError(
            f"response is stale: nextUpdate {next_update.isoformat()} has passed "
            f"(now {now.isoformat()})"
        )


def validate_response(
    der: bytes,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    nonce: bytes | None = None,
    now: dt.datetime | None = None,
    max_age: float | None = 3600,
    trusted_responders: Sequence[x509.Certificate] = (),
) -> OCSPStatus:
    """Check an OCSP response for ``cert`` completely and return its status.

    Checks, in order: successful response status; the signer is the issuer, a
    locally ``trusted_responders`` certificate, or a delegate issued directly by
    the issuer with id-kp-OCSPSigning; the signature; the CertID (serial, issuer
    name hash, issuer key hash); the nonce if one was sent; freshness at ``now``
    (thisUpdate not in the future beyond :data:`CLOCK_SKEW`, not older than
    ``max_age`` seconds, nextUpdate not passed); a delegate's certificate is
    valid at ``now``. Raises :class:`OCSPError`
    (a subclass naming the failed check) when any of them fails.
    """
    when = now or dt.datetime.now(dt.UTC)
    try:
        resp = ocsp.load_der_ocsp_response(der)
    except ValueError as exc:
        raise OCSPError(f"not a DER OCSP response: {exc}") from exc
    if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise OCSPResponseStatusError(
            f"responder answered {resp.response_status.name} instead of a signed response"
        )
    try:
        signer = _authorise_responder(resp, issuer, trusted_responders)
        _verify_signature(resp, signer)
        single = _single_for(resp, cert, issuer)
    except (ValueError, UnsupportedAlgorithm) as exc:  # undecodable parts of a parsed response
        raise OCSPError(f"cannot read OCSP response: {exc}") from exc
    if nonce is not None:
        got = _nonce_of(resp.extensions)
        if got is None:
            raise NonceMismatchError("nonce mismatch: the response carries no nonce")
        if got != nonce:
            raise NonceMismatchError(
                f"nonce mismatch: sent {nonce.hex()}, response has {got.hex()}"
            )
    this_update, next_update = single.this_update_utc, single.next_update_utc
    _check_freshness(this_update, next_update, when, max_age)
    if not (_same_cert(signer, issuer) or any(_same_cert(signer, t) for t in trusted_responders)):
        _check_delegate_validity(signer, when)
    status = single.certificate_status
    reason = single.revocation_reason if status == ocsp.OCSPCertStatus.REVOKED else None
    return OCSPStatus(
        status=status.name.lower(),  # type: ignore[arg-type]
        this_update=this_update,
        next_update=next_update,
        produced_at=resp.produced_at_utc,
        revocation_time=(
            single.revocation_time_utc if status == ocsp.OCSPCertStatus.REVOKED else None
        ),
        revocation_reason=reason.value if reason is not None else None,
        raw=der,
    )


# ----- responder side --------------------------------------------------------------------
@dataclass(frozen=True)
class Revocation:
    """What the responder needs to know about a certificate the CA issued."""

    revoked_at: dt.datetime | None
    reason: str | None = None


#: Look up a serial issued by this CA: None when never issued (OCSP "unknown").
StatusLookup = Callable[[int], Revocation | None]


@dataclass(frozen=True)
class Answer:
    """A DER OCSPResponse plus what to log about it (never secrets)."""

    der: bytes
    status: str
    serial: int | None = None


class OCSPResponder:
    """Turns DER OCSPRequests into signed DER OCSPResponses for one issuing CA.

    Revocation state comes from ``lookup`` on every call, so a revocation is
    visible to the next request. The signature uses ``signing_key`` with
    ``responder_cert`` (the CA itself or a delegated OCSP-signing certificate),
    which is included in every response so relying parties can check it.
    """

    def __init__(
        self,
        issuer: x509.Certificate,
        responder_cert: x509.Certificate,
        signing_key: CertificateIssuerPrivateKeyTypes,
        lookup: StatusLookup,
        validity: int = 3600,
    ) -> None:
        if validity <= 0:
            raise ValueError("validity must be a positive number of seconds")
        self.issuer = issuer
        self.responder_cert = responder_cert
        self._key = signing_key
        self._lookup = lookup
        self.validity = dt.timedelta(seconds=validity)
        self._hashes: dict[str, tuple[bytes, bytes]] = {}

    def _issuer_hashes(self, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
        cached = self._hashes.get(algorithm.name)
        if cached is None:
            cached = self._hashes[algorithm.name] = cert_id_hashes(self.issuer, algorithm)
        return cached

    @staticmethod
    def error(status: ocsp.OCSPResponseStatus) -> bytes:
        """An unsigned error response (RFC 6960 §2.3), e.g. malformedRequest."""
        return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
            serialization.Encoding.DER
        )

    def respond(self, der: bytes, now: dt.datetime | None = None) -> Answer:
        """Answer one request; bad input yields ``malformedRequest``, never an exception."""
        try:
            req = ocsp.load_der_ocsp_request(der)
            serial = req.serial_number
            algorithm = req.hash_algorithm
            nonce = _nonce_of(req.extensions)
        except (ValueError, UnsupportedAlgorithm):
            return Answer(self.error(ocsp.OCSPResponseStatus.MALFORMED_REQUEST), "malformedRequest")
        except NotImplementedError:
            # cryptography parses one certificate per request only; our client sends
            # one, openssl sends several only when given several -cert options.
            return Answer(
                self.error(ocsp.OCSPResponseStatus.MALFORMED_REQUEST),
                "malformedRequest (more than one certificate)",
            )
        if nonce is not None and not 1 <= len(nonce) <= MAX_NONCE_LEN:
            return Answer(
                self.error(ocsp.OCSPResponseStatus.MALFORMED_REQUEST), "malformedRequest", serial
            )
        when = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
        revocation: Revocation | None = None
        if (req.issuer_name_hash, req.issuer_key_hash) == self._issuer_hashes(algorithm):
            revocation = self._lookup(serial)
        revoked_at: dt.datetime | None = None
        reason: x509.ReasonFlags | None = None
        if revocation is None:
            cert_status = ocsp.OCSPCertStatus.UNKNOWN
        elif revocation.revoked_at is None:
            cert_status = ocsp.OCSPCertStatus.GOOD
        else:
            cert_status = ocsp.OCSPCertStatus.REVOKED
            revoked_at = revocation.revoked_at
            reason = x509.ReasonFlags(revocation.reason) if revocation.reason else None
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                issuer_name_hash=req.issuer_name_hash,
                issuer_key_hash=req.issuer_key_hash,
                serial_number=serial,
                algorithm=algorithm,
                cert_status=cert_status,
                this_update=when,
                next_update=when + self.validity,
                revocation_time=revoked_at,
                revocation_reason=reason,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, self.responder_cert)
            .certificates([self.responder_cert])
        )
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        signed = builder.sign(self._key, hashes.SHA256())
        return Answer(
            signed.public_bytes(serialization.Encoding.DER), cert_status.name.lower(), serial
        )
