"""Detached CMS SignedData (RFC 5652): the one signature format secnode uses.

Signing uses ``cryptography``'s PKCS#7 builder; verification parses the
structure with ``asn1crypto`` and checks the signature over the DER signed
attributes with ``cryptography``. ``openssl cms -verify -binary -content DATA``
accepts what :func:`sign_detached` produces.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from certs.keys import Signer

_HASHES: dict[str, tuple[hashes.HashAlgorithm, str]] = {
    "sha256": (hashes.SHA256(), "sha256"),
    "sha384": (hashes.SHA384(), "sha384"),
    "sha512": (hashes.SHA512(), "sha512"),
}


class CMSError(Exception):
    """A CMS signature is malformed, does not match, or is not trusted."""


@dataclass(frozen=True)
class VerifiedSignature:
    signer: x509.Certificate
    certificates: tuple[x509.Certificate, ...]
    signing_time: dt.datetime | None


def sign_detached(
    data: bytes,
    cert: x509.Certificate,
    signer: Signer,
    extra_certs: Sequence[x509.Certificate] = (),
    hash_name: str = "sha256",
) -> bytes:
    """Return DER ``ContentInfo(SignedData)`` over ``data`` without embedding it."""
    algorithm = _HASHES[hash_name][0]
    key = signer.issuer_key()
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise TypeError("CMS signing needs an RSA or EC key")
    builder = (
        pkcs7.PKCS7SignatureBuilder().set_data(data).add_signer(cert, key, algorithm)  # type: ignore[arg-type]
    )
    for extra in extra_certs:
        builder = builder.add_certificate(extra)
    return builder.sign(
        serialization.Encoding.DER,
        [
            pkcs7.PKCS7Options.DetachedSignature,
            pkcs7.PKCS7Options.Binary,
            pkcs7.PKCS7Options.NoCapabilities,
        ],
    )


def verify_detached(signature: bytes, data: bytes) -> VerifiedSignature:
    """Check that ``signature`` is a valid detached CMS signature over ``data``.

    Returns the signer's certificate (taken from the structure); deciding
    whether that certificate is trusted is the caller's job (see
    :func:`certs.chain.verify_chain` or compare with an anchor).
    """
    try:
        info = asn1_cms.ContentInfo.load(signature)
        if info["content_type"].native != "signed_data":
            raise CMSError("not a CMS SignedData structure")
        signed = info["content"]
        if signed["encap_content_info"]["content"].native is not None:
            raise CMSError("signature is not detached (it embeds content)")
        certificates = tuple(
            x509.load_der_x509_certificate(c.chosen.dump())
            for c in (signed["certificates"] or [])
            if c.name == "certificate"
        )
        signer_infos = list(signed["signer_infos"])
    except CMSError:
        raise
    except Exception as exc:  # asn1crypto raises many types on garbage
        raise CMSError(f"malformed CMS signature: {exc}") from exc
    if len(signer_infos) != 1:
        raise CMSError(f"expected exactly one signer, found {len(signer_infos)}")
    signer_info = signer_infos[0]
    cert = find_signer(signer_info, certificates)
    if cert is None:
        raise CMSError("the signer's certificate is not included in the signature")
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    if digest_name not in _HASHES:
        raise CMSError(f"unsupported digest algorithm {digest_name}")
    algorithm, hashlib_name = _HASHES[digest_name]
    signed_attrs = signer_info["signed_attrs"]
    if not signed_attrs:
        raise CMSError("signature has no signed attributes")
    message_digest = None
    signing_time = None
    for attr in signed_attrs:
        kind = attr["type"].native
        if kind == "message_digest":
            message_digest = attr["values"][0].native
        elif kind == "signing_time":
            signing_time = attr["values"][0].native
        elif kind == "content_type" and attr["values"][0].native != "data":
            raise CMSError("signed content type is not id-data")
    if message_digest is None:
        raise CMSError("signature has no message-digest attribute")
    if hashlib.new(hashlib_name, data).digest() != message_digest:
        raise CMSError("content does not match the signature (message digest differs)")
    to_verify = b"\x31" + signed_attrs.dump()[1:]  # signed over the attributes as a SET
    try:
        _verify_raw(cert.public_key(), signer_info["signature"].native, to_verify, algorithm)
    except InvalidSignature as exc:
        raise CMSError("signature value does not verify with the signer's certificate") from exc
    return VerifiedSignature(cert, certificates, signing_time)


def find_signer(
    signer_info: asn1_cms.SignerInfo, candidates: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    """The candidate a SignerInfo's ``sid`` names (issuer+serial or subject key id)."""
    sid = signer_info["sid"]
    for cert in candidates:
        if sid.name == "issuer_and_serial_number":
            if (
                cert.serial_number == sid.chosen["serial_number"].native
                and cert.issuer.public_bytes() == sid.chosen["issuer"].dump()
            ):
                return cert
        else:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except x509.ExtensionNotFound:
                continue
            if ski.value.digest == sid.chosen.native:
                return cert
    return None


def _verify_raw(
    public_key: object, sig: bytes, data: bytes, algorithm: hashes.HashAlgorithm
) -> None:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(sig, data, ec.ECDSA(algorithm))
    elif isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(sig, data, padding.PKCS1v15(), algorithm)
    else:
        raise CMSError(f"unsupported signer key type {type(public_key).__name__}")
