"""RFC 3161 tokens without the network: build requests, read and verify tokens (pure).

The offline message-log verifier uses this module, so it imports no network
library; sending the request is :mod:`certs.tsa_client`'s job (the split
pyHanko makes between its timestamp API and its aiohttp client).

What :func:`verify_token` checks, in order, each failure a :class:`TSAError`
with a one-line reason:

1. the response status is granted (when given a response, not a bare token);
2. the token is CMS SignedData over a TSTInfo with exactly one signer;
3. the signer's certificate is found (in the token, or in ``tsa_certs`` /
   ``intermediates``) and the ESS signing-certificate(-v2) attribute names it;
4. the content-type attribute is id-ct-TSTInfo and the message-digest
   attribute equals the hash of the encapsulated TSTInfo;
5. the signature over the DER signed attributes verifies with that certificate;
6. the certificate has exactly one EKU, timeStamping, marked critical;
7. the certificate chains to a trusted CA at genTime (or is itself pinned in
   ``trusted``, as X-Road's global configuration pins approved TSAs);
8. the message imprint has the expected algorithm and digest;
9. the nonce equals the one sent, and the policy the one required, if given.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asn1crypto import algos as asn1_algos
from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import tsp as asn1_tsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from certs.chain import ChainError, verify_chain
from certs.cms import find_signer
from certs.names import display_name
from certs.tsa import (
    DIGEST_SIZES,
    TimeStampResp,
    TSAError,
    require_tsa_eku,
)

__all__ = [
    "TSAError",
    "TSARejected",
    "TokenContents",
    "TokenInfo",
    "build_request",
    "token_contents",
    "token_from_response",
    "verify_token",
]

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


class TSARejected(TSAError):
    """The TSA answered with a non-granted status.

    ``fail_info`` holds the RFC 3161 names of the failInfo bits (``badAlg``,
    ``badRequest``, ``badDataFormat``, ``unacceptedPolicy``, ...).
    """

    def __init__(self, message: str, status: str, fail_info: frozenset[str]) -> None:
        super().__init__(message)
        self.status = status
        self.fail_info = fail_info


@dataclass(frozen=True)
class TokenContents:
    """The TSTInfo fields of a token, as stored; not a statement that it verified."""

    gen_time: dt.datetime
    serial: int
    policy: str
    hash_name: str
    digest: bytes
    nonce: int | None
    accuracy: dt.timedelta | None


@dataclass(frozen=True)
class TokenInfo(TokenContents):
    """A token that passed :func:`verify_token`, with the TSA certificate that signed it."""

    tsa_cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]


# ----- requests ------------------------------------------------------------------------
def build_request(
    digest: bytes,
    hash_name: str = "sha256",
    nonce: bool = True,
    cert_req: bool = True,
    policy: str | None = None,
) -> tuple[bytes, int | None]:
    """DER TimeStampReq for ``digest``; returns it with the nonce to check the reply against.

    The nonce is 64 random bits: it binds the reply to this request, so a
    replayed old token for the same digest is caught.
    """
    if hash_name not in DIGEST_SIZES:
        raise TSAError(f"hash {hash_name!r} not supported; use {', '.join(DIGEST_SIZES)}")
    if len(digest) != DIGEST_SIZES[hash_name]:
        raise TSAError(
            f"a {hash_name} digest is {DIGEST_SIZES[hash_name]} bytes, not {len(digest)}"
        )
    fields: dict[str, Any] = {
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": hash_name}, "hashed_message": digest},
        "cert_req": cert_req,
    }
    value = secrets.randbits(64) if nonce else None
    if value is not None:
        fields["nonce"] = value
    if policy is not None:
        fields["req_policy"] = policy
    return asn1_tsp.TimeStampReq(fields).dump(), value


# ----- parsing -------------------------------------------------------------------------
def token_from_response(resp_der: bytes) -> bytes:
    """The bare token (DER ContentInfo) of a granted TimeStampResp; :class:`TSARejected` else."""
    try:
        resp = TimeStampResp.load(resp_der, strict=True)
        status_info = resp["status"]
        status = status_info["status"].native
        fail_bits = status_info["fail_info"].native
        texts = status_info["status_string"].native
        token = resp["time_stamp_token"]
    except Exception as exc:  # asn1crypto raises many types on garbage
        raise TSAError(f"malformed time-stamp response: {exc}") from exc
    if status not in ("granted", "granted_with_mods"):
        fail_info = frozenset(_rfc_name(bit) for bit in fail_bits or ())
        reasons = ", ".join(sorted(fail_info)) or "unspecified"
        text = "; ".join(texts or ())
        raise TSARejected(
            f"TSA refused the request: status {status}, failInfo {reasons}"
            + (f": {text}" if text else ""),
            status,
            fail_info,
        )
    if isinstance(token, asn1_core.Void) or not token.contents:
        raise TSAError("the TSA granted the request but sent no token")
    return bytes(token.dump())


def _rfc_name(asn1crypto_name: str) -> str:
    """``bad_data_format`` -> ``badDataFormat``, the spelling RFC 3161 and openssl use."""
    head, *rest = asn1crypto_name.split("_")
    name = head + "".join(part.capitalize() for part in rest)
    return "unacceptedExtension" if name == "unacceptedExtensions" else name


@dataclass(frozen=True)
class _Parsed:
    signed_data: asn1_cms.SignedData
    tst_der: bytes
    tst: asn1_tsp.TSTInfo
    contents: TokenContents


def _is_response(der: bytes) -> bool:
    """A TimeStampResp starts with a SEQUENCE (PKIStatusInfo), a ContentInfo with an OID."""
    try:
        outer = asn1_core.Sequence.load(der)
        return bool(outer.contents) and outer.contents[0] == 0x30
    except Exception as exc:
        raise TSAError(f"malformed time-stamp token: {exc}") from exc


def _parse_token(token_der: bytes) -> _Parsed:
    try:
        info = asn1_cms.ContentInfo.load(token_der, strict=True)
        if info["content_type"].native != "signed_data":
            raise TSAError("malformed time-stamp token: not CMS SignedData")
        signed = info["content"]
        encap = signed["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise TSAError("malformed time-stamp token: content is not a TSTInfo")
        tst_der = bytes(encap["content"])
        tst = asn1_tsp.TSTInfo.load(tst_der, strict=True)
        native = tst.native
    except TSAError:
        raise
    except Exception as exc:  # asn1crypto raises many types on garbage
        raise TSAError(f"malformed time-stamp token: {exc}") from exc
    accuracy = native["accuracy"]
    contents = TokenContents(
        gen_time=native["gen_time"],
        serial=int(native["serial_number"]),
        policy=str(native["policy"]),
        hash_name=str(native["message_imprint"]["hash_algorithm"]["algorithm"]),
        digest=bytes(native["message_imprint"]["hashed_message"]),
        nonce=native["nonce"],
        accuracy=None
        if accuracy is None
        else dt.timedelta(
            seconds=accuracy["seconds"] or 0,
            milliseconds=accuracy["millis"] or 0,
            microseconds=accuracy["micros"] or 0,
        ),
    )
    return _Parsed(signed, tst_der, tst, contents)


def token_contents(token_or_response: bytes) -> TokenContents:
    """Read genTime, serial, imprint etc. without verifying (e.g. to index stored tokens)."""
    der = token_or_response
    if _is_response(der):
        der = token_from_response(der)
    return _parse_token(der).contents


# ----- verification --------------------------------------------------------------------
def verify_token(
    token_or_response: bytes,
    digest: bytes,
    hash_name: str,
    trusted: Sequence[x509.Certificate],
    nonce: int | None = None,
    intermediates: Sequence[x509.Certificate] = (),
    *,
    tsa_certs: Sequence[x509.Certificate] = (),
    policy: str | None = None,
) -> TokenInfo:
    """Verify a token (bare ContentInfo or whole TimeStampResp) over ``digest``.

    ``trusted`` holds CA certificates, or approved TSA certificates pinned
    directly. ``tsa_certs`` supplies the signer when the token was requested
    without certReq. See the module docstring for the checks, in order.
    """
    token_der = token_or_response
    if _is_response(token_der):
        token_der = token_from_response(token_der)
    parsed = _parse_token(token_der)
    signed = parsed.signed_data
    try:
        embedded = [
            x509.load_der_x509_certificate(c.chosen.dump())
            for c in (signed["certificates"] or [])
            if c.name == "certificate"
        ]
        signer_infos = list(signed["signer_infos"])
    except Exception as exc:
        raise TSAError(f"malformed time-stamp token: {exc}") from exc
    if len(signer_infos) != 1:
        raise TSAError(f"a time-stamp token has one signer, this one has {len(signer_infos)}")
    signer_info = signer_infos[0]
    cert = _find_signer(signer_info, [*embedded, *tsa_certs, *intermediates])
    _check_signed_attributes(signer_info, parsed.tst_der, cert)
    require_tsa_eku(cert)
    contents = parsed.contents
    chain = _check_trust(cert, trusted, [*intermediates, *embedded], contents.gen_time)
    if contents.hash_name != hash_name:
        raise TSAError(
            f"imprint does not match: token uses {contents.hash_name}, expected {hash_name}"
        )
    if contents.digest != digest:
        raise TSAError(
            f"imprint does not match: token stamps {contents.digest.hex()}, expected {digest.hex()}"
        )
    if nonce is not None and contents.nonce != nonce:
        raise TSAError(f"nonce mismatch: sent {nonce}, token has {contents.nonce}")
    if policy is not None and contents.policy != policy:
        raise TSAError(f"policy mismatch: token has {contents.policy}, required {policy}")
    return TokenInfo(**vars(contents), tsa_cert=cert, chain=tuple(chain))


def _find_signer(
    signer_info: asn1_cms.SignerInfo, candidates: Sequence[x509.Certificate]
) -> x509.Certificate:
    cert = find_signer(signer_info, candidates)
    if cert is None:
        raise TSAError(
            "the TSA certificate is neither in the token nor given "
            "(request with certReq, or pass the TSA certificate)"
        )
    return cert


def _check_signed_attributes(
    signer_info: asn1_cms.SignerInfo, tst_der: bytes, cert: x509.Certificate
) -> None:
    """Steps 3-5: ESS binding, content type, message digest and the signature itself."""
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    if digest_name not in _HASHES:
        raise TSAError(f"token signed with unsupported digest algorithm {digest_name}")
    signed_attrs = signer_info["signed_attrs"]
    if not signed_attrs:
        raise TSAError("token signature does not verify: it has no signed attributes")
    # Taken before the attributes are read: asn1crypto then dumps the bytes as received
    # (afterwards it re-encodes the whole SET, ~3 ms). Signed as a SET, not [0] IMPLICIT.
    to_verify = b"\x31" + signed_attrs.dump()[1:]
    found: dict[str, Any] = {}
    for attr in signed_attrs:
        found[attr["type"].native] = attr["values"][0]
    if "content_type" not in found or found["content_type"].native != "tst_info":
        raise TSAError("token signature does not verify: signed content type is not TSTInfo")
    message_digest = found.get("message_digest")
    if message_digest is None:
        raise TSAError("token signature does not verify: no message-digest attribute")
    if hashlib.new(digest_name, tst_der).digest() != message_digest.native:
        raise TSAError(
            "token signature does not verify: message digest differs from the TSTInfo "
            "(the token was altered)"
        )
    _check_ess_binding(found, cert)
    try:
        _verify_raw(cert.public_key(), signer_info, digest_name, to_verify)
    except InvalidSignature as exc:
        raise TSAError(
            f"token signature does not verify with {display_name(cert.subject)}"
        ) from exc


def _check_ess_binding(found: dict[str, Any], cert: x509.Certificate) -> None:
    """RFC 3161 §2.4.2 / RFC 5816: the signed attributes must name the signing certificate."""
    der = cert.public_bytes(serialization.Encoding.DER)
    if "signing_certificate_v2" in found:
        ids = found["signing_certificate_v2"]["certs"]
        first = ids[0]
        alg = first["hash_algorithm"]["algorithm"].native
        try:
            expected = hashlib.new(alg, der).digest()
        except ValueError as exc:
            raise TSAError(f"signing-certificate-v2 uses unknown hash {alg}") from exc
    elif "signing_certificate" in found:
        first = found["signing_certificate"]["certs"][0]
        expected = hashlib.sha1(der).digest()  # ESSCertID v1 is SHA-1 by definition
    else:
        raise TSAError("token signature does not verify: no signing-certificate attribute")
    if first["cert_hash"].native != expected:
        raise TSAError(
            "token signature does not verify: signing-certificate attribute names another "
            "certificate than the signer's"
        )


def _verify_raw(
    public_key: object, signer_info: asn1_cms.SignerInfo, digest_name: str, data: bytes
) -> None:
    sig_alg: asn1_algos.SignedDigestAlgorithm = signer_info["signature_algorithm"]
    signature = signer_info["signature"].native
    kind = sig_alg.signature_algo
    try:
        hash_name = sig_alg.hash_algo
    except ValueError:  # plain rsaEncryption / ecPublicKey: the digest algorithm applies
        hash_name = digest_name
    if hash_name not in _HASHES:
        raise TSAError(f"token signed with unsupported hash {hash_name}")
    algorithm = _HASHES[hash_name]
    if kind == "ecdsa" and isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(algorithm))
    elif kind == "rsassa_pkcs1v15" and isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
    elif kind == "rsassa_pss" and isinstance(public_key, rsa.RSAPublicKey):
        params = sig_alg["parameters"]
        public_key.verify(
            signature,
            data,
            padding.PSS(mgf=padding.MGF1(algorithm), salt_length=params["salt_length"].native),
            algorithm,
        )
    else:
        raise TSAError(
            f"token signature algorithm {kind} does not fit the TSA's {type(public_key).__name__}"
        )


def _check_trust(
    cert: x509.Certificate,
    trusted: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    at: dt.datetime,
) -> list[x509.Certificate]:
    if cert in trusted:  # pinned approved TSA certificate
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            raise TSAError(
                f"TSA certificate {display_name(cert.subject)} was not valid at genTime "
                f"{at.isoformat()}"
            )
        return [cert]
    try:
        return verify_chain(cert, trusted, intermediates, at=at)
    except ChainError as exc:
        raise TSAError(f"TSA certificate does not chain to a trusted CA: {exc}") from exc
