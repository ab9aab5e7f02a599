"""Message signatures: detached CMS SignedData over a message's canonical digest.

The signed content is the 32-byte canonical digest of the message (see
``docs/protocol.md``). The SignerInfo carries **no signed attributes**, so the
signature value is ECDSA/RSA with SHA-256 directly over that content (RFC 5652
§5.4) and the signer's certificate is embedded. ``openssl cms -verify -binary
-content digest.bin -inform DER`` accepts it.

Why not signed attributes: on the message path they make every verification a
full ASN.1 parse (~200 µs in asn1crypto) on top of the 65 µs ECDSA check. Here
the structure for one signer certificate is fixed except for the signature
value, so :class:`SignerCodec` builds it once with asn1crypto as a template and
later messages only splice or compare bytes around the signature value. Any
signature that does not match the canonical template byte for byte goes through
the full asn1crypto parse, so a differently encoded but valid CMS still
verifies, and nothing is trusted that the library did not check.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from asn1crypto import algos
from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

_PLACEHOLDER_BYTE = 0xA5


class SignatureError(Exception):
    """A message signature is malformed, by another key, or over other content."""


def _sig_algorithm(public_key: object) -> str:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "sha256_ecdsa"
    if isinstance(public_key, rsa.RSAPublicKey):
        return "sha256_rsa"
    raise SignatureError(f"unsupported signer key type {type(public_key).__name__}")


def _verify_raw(public_key: object, signature: bytes, content: bytes) -> None:
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, content, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, content, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise SignatureError(f"unsupported signer key type {type(public_key).__name__}")
    except InvalidSignature as exc:
        raise SignatureError("signature does not verify with the signer's certificate") from exc


@dataclass
class SignerCodec:
    """CMS encoder/decoder for one signer certificate (templates cached per signature length)."""

    cert: x509.Certificate
    cert_der: bytes = field(init=False)
    cert_sha256: str = field(init=False)
    _templates: dict[int, tuple[bytes, bytes]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.cert_der = self.cert.public_bytes(serialization.Encoding.DER)
        self.cert_sha256 = hashlib.sha256(self.cert_der).hexdigest()
        self._public_key = self.cert.public_key()
        self._algorithm = _sig_algorithm(self._public_key)
        self._asn1_cert = asn1_x509.Certificate.load(self.cert_der)

    def _build(self, signature: bytes) -> bytes:
        signer_info = asn1_cms.SignerInfo(
            {
                "version": "v1",
                "sid": asn1_cms.SignerIdentifier(
                    {
                        "issuer_and_serial_number": asn1_cms.IssuerAndSerialNumber(
                            {
                                "issuer": self._asn1_cert.issuer,
                                "serial_number": self._asn1_cert.serial_number,
                            }
                        )
                    }
                ),
                "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": self._algorithm}),
                "signature": signature,
            }
        )
        signed_data = asn1_cms.SignedData(
            {
                "version": "v1",
                "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
                "encap_content_info": {"content_type": "data"},
                "certificates": [self._asn1_cert],
                "signer_infos": [signer_info],
            }
        )
        return bytes(
            asn1_cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
        )

    def _template(self, length: int) -> tuple[bytes, bytes]:
        template = self._templates.get(length)
        if template is None:
            placeholder = bytes([_PLACEHOLDER_BYTE]) * length
            encoded = self._build(placeholder)
            at = encoded.rindex(placeholder)
            template = (encoded[:at], encoded[at + length :])
            self._templates[length] = template
        return template

    def encode(self, signature: bytes) -> bytes:
        """CMS DER for a raw signature value made by this certificate's key."""
        prefix, suffix = self._template(len(signature))
        return prefix + signature + suffix

    def extract(self, cms_der: bytes) -> bytes | None:
        """The raw signature if ``cms_der`` is exactly our canonical encoding, else None."""
        for length, (prefix, suffix) in self._templates.items():
            if (
                len(cms_der) == len(prefix) + length + len(suffix)
                and cms_der.startswith(prefix)
                and cms_der.endswith(suffix)
            ):
                return cms_der[len(prefix) : len(prefix) + length]
        return None

    def verify(self, cms_der: bytes, content: bytes) -> None:
        """Check ``cms_der`` is this certificate's signature over ``content``."""
        raw = self.extract(cms_der)
        if raw is None:
            parsed_cert, raw = parse_signature(cms_der)
            if parsed_cert.public_bytes(serialization.Encoding.DER) != self.cert_der:
                raise SignatureError("signature was made with another certificate")
            self._template(len(raw))
        _verify_raw(self._public_key, raw, content)

    def verify_raw(self, signature: bytes, content: bytes) -> None:
        """Check a raw signature value (no CMS) by this certificate's key over ``content``:
        a second signature by a signer already identified (the request's log witness)."""
        _verify_raw(self._public_key, signature, content)


def parse_signature(cms_der: bytes) -> tuple[x509.Certificate, bytes]:
    """Full parse (asn1crypto): the embedded signer certificate and the raw signature value.

    Only SignerInfos without signed attributes, over id-data, with SHA-256 are
    accepted: that is the one form secnode produces for message signatures.
    """
    try:
        info = asn1_cms.ContentInfo.load(cms_der, strict=True)
        if info["content_type"].native != "signed_data":
            raise SignatureError("not a CMS SignedData structure")
        signed = info["content"]
        if signed["encap_content_info"]["content"].native is not None:
            raise SignatureError("signature is not detached")
        infos = list(signed["signer_infos"])
        if len(infos) != 1:
            raise SignatureError(f"expected one signer, found {len(infos)}")
        signer_info = infos[0]
        if signer_info["signed_attrs"]:
            raise SignatureError("message signatures must not carry signed attributes")
        if signer_info["digest_algorithm"]["algorithm"].native != "sha256":
            raise SignatureError("message signatures must use SHA-256")
        sid = signer_info["sid"]
        if sid.name != "issuer_and_serial_number":
            raise SignatureError("signer must be identified by issuer and serial number")
        serial = sid.chosen["serial_number"].native
        certs = [c.chosen for c in (signed["certificates"] or []) if c.name == "certificate"]
        match = next(
            (
                c
                for c in certs
                if c.serial_number == serial and c.issuer.dump() == sid.chosen["issuer"].dump()
            ),
            None,
        )
        if match is None:
            raise SignatureError("the signer's certificate is not embedded in the signature")
        cert = x509.load_der_x509_certificate(match.dump())
        return cert, bytes(signer_info["signature"].native)
    except SignatureError:
        raise
    except Exception as exc:  # asn1crypto raises many types on malformed input
        raise SignatureError(f"malformed CMS signature: {exc}") from exc


class MessageSigner:
    """Signs message digests with a member's sign key; output is detached CMS DER."""

    def __init__(self, cert: x509.Certificate, sign: object) -> None:
        """``sign`` is a :class:`certs.keys.Signer` (raw SHA-256 signature over bytes)."""
        self.codec = SignerCodec(cert)
        self._sign = sign

    def sign(self, content: bytes) -> bytes:
        return self.codec.encode(self.sign_raw(content))

    def sign_raw(self, content: bytes) -> bytes:
        """The raw signature value (no CMS): verified with the certificate of a CMS
        signature made by the same signer (:meth:`SignerCodec.verify_raw`)."""
        return bytes(self._sign.sign(content))  # type: ignore[attr-defined]


class SignatureVerifier:
    """Verifies message signatures, reusing one codec per signer certificate."""

    def __init__(self) -> None:
        self._codecs: dict[bytes, SignerCodec] = {}

    def _codec_for(self, cms_der: bytes) -> SignerCodec:
        for codec in self._codecs.values():
            if codec.extract(cms_der) is not None:
                return codec
        cert, _ = parse_signature(cms_der)
        der = cert.public_bytes(serialization.Encoding.DER)
        known = self._codecs.get(der)
        if known is not None:
            return known
        if len(self._codecs) > 1024:
            self._codecs.clear()
        codec = self._codecs[der] = SignerCodec(cert)
        return codec

    def verify_signer(self, cms_der: bytes, content: bytes) -> SignerCodec:
        """Verify; the returned codec names the signer (certificate, DER, hash)."""
        codec = self._codec_for(cms_der)
        codec.verify(cms_der, content)
        return codec

    def verify(self, cms_der: bytes, content: bytes) -> x509.Certificate:
        """Verify and return the signer certificate; the caller checks trust and identity."""
        return self.verify_signer(cms_der, content).cert
