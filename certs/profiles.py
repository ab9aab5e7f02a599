"""Certificate profiles (sign, auth, ocsp, tsa): pure rules, no I/O.

A profile decides which extensions an issued certificate carries and which
CSRs are acceptable for it. The same rules are used by the node to check that
an imported certificate has the profile it claims (:func:`detect_profile`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from certs.errors import SecnodeError
from certs.names import display_name

PROFILES = ("sign", "auth", "ocsp", "tsa")
#: One part of a member identifier: X-Road's identifier characters (pr-mess §2.7) plus '_'.
_MEMBER_PART = re.compile(r"^[A-Za-z0-9'()+,\-.=?_]{1,255}$")


class ProfileError(SecnodeError, ValueError):
    """A CSR or certificate does not fit the requested profile."""


def member_serial(name: x509.Name) -> str:
    """The member identifier text a sign certificate names in its ``serialNumber`` attribute.

    Only the shape is checked here (``INSTANCE/CLASS/CODE`` in X-Road's identifier
    characters), so the PKI toolkit needs nothing of the exchange layer; the node parses
    it into a member identifier (:func:`secnode.core.cert_member.member_id_of`).
    """
    values = name.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if not values:
        raise ProfileError(
            "subject has no serialNumber attribute; a sign certificate must name the member "
            "identifier, e.g. serialNumber=JP/GOV/072028"
        )
    if len(values) > 1:
        raise ProfileError("subject has more than one serialNumber attribute")
    value = values[0].value
    text = value if isinstance(value, str) else value.decode()
    parts = text.split("/")
    if len(parts) != 3:
        raise ProfileError(
            f"subject serialNumber is not a member identifier: {text!r} has {len(parts)} "
            "part(s); expected INSTANCE/CLASS/CODE"
        )
    for part in parts:
        if not _MEMBER_PART.match(part):
            raise ProfileError(
                f"subject serialNumber is not a member identifier: part {part!r} is empty, "
                "too long or contains not allowed character(s)"
            )
    return text


def check_csr(csr: x509.CertificateSigningRequest, profile: str) -> None:
    """Refuse CSRs that cannot become a certificate of ``profile``."""
    if profile not in PROFILES:
        raise ProfileError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}")
    if not csr.is_signature_valid:
        raise ProfileError("the CSR's self-signature is invalid")
    if len(csr.subject) == 0:
        raise ProfileError("the CSR has an empty subject")
    if profile == "sign":
        member_serial(csr.subject)


def build_extensions(
    profile: str,
    subject_public_key: object,
    issuer: x509.Certificate,
    ocsp_url: str | None,
) -> list[tuple[x509.ExtensionType, bool]]:
    """Extensions (value, critical) for a certificate of ``profile`` issued by ``issuer``."""
    exts: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.SubjectKeyIdentifier.from_public_key(subject_public_key), False),  # type: ignore[arg-type]
        (_aki(issuer), False),
    ]
    usage = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    if profile == "sign":
        usage.update(digital_signature=True, content_commitment=True)
    elif profile == "auth":
        usage.update(digital_signature=True, key_encipherment=True)
        exts.append(
            (
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                False,
            )
        )
    elif profile == "ocsp":
        usage.update(digital_signature=True)
        exts.append((x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False))
        exts.append((x509.OCSPNoCheck(), False))
    elif profile == "tsa":
        usage.update(digital_signature=True)
        exts.append((x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), True))
    else:
        raise ProfileError(f"unknown profile {profile!r}")
    exts.append((x509.KeyUsage(**usage), True))
    if ocsp_url and profile in ("sign", "auth"):
        exts.append(
            (
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            AuthorityInformationAccessOID.OCSP,
                            x509.UniformResourceIdentifier(ocsp_url),
                        )
                    ]
                ),
                False,
            )
        )
    return exts


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]


def _eku(cert: x509.Certificate) -> Sequence[x509.ObjectIdentifier]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return []


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def detect_profile(cert: x509.Certificate) -> str | None:
    """Which of our profiles ``cert`` satisfies, judged by key usage and EKU (None if none)."""
    eku = _eku(cert)
    ku = _key_usage(cert)
    if ExtendedKeyUsageOID.TIME_STAMPING in eku:
        return "tsa"
    if ExtendedKeyUsageOID.OCSP_SIGNING in eku:
        return "ocsp"
    if ExtendedKeyUsageOID.SERVER_AUTH in eku or ExtendedKeyUsageOID.CLIENT_AUTH in eku:
        return "auth"
    if ku is not None and ku.digital_signature and ku.content_commitment:
        return "sign"
    return None


def require_profile(cert: x509.Certificate, profile: str) -> None:
    """Raise unless ``cert`` is usable as a ``profile`` certificate."""
    found = detect_profile(cert)
    if found != profile:
        raise ProfileError(
            f"certificate {display_name(cert.subject)} has profile {found or 'none'}, not {profile}"
        )
    if profile == "sign":
        member_serial(cert.subject)
    if profile == "auth":
        ku = _key_usage(cert)
        if ku is None or not ku.digital_signature:
            raise ProfileError("auth certificate lacks digitalSignature key usage")


def ocsp_urls(cert: x509.Certificate) -> list[str]:
    """OCSP responder URLs from the certificate's AIA extension."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [
        str(d.access_location.value)
        for d in aia
        if d.access_method == AuthorityInformationAccessOID.OCSP
    ]
