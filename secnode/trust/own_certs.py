"""Importing the node's own auth and sign certificates, and fetching OCSP for them.

A certificate is only worth importing if the node can actually use it, so
every check a peer will later make is made here first, with a reason the
operator can act on:

1. it matches one of this node's keys (SubjectPublicKeyInfo equals the CSR's),
   which decides its usage (auth or sign);
2. it has that usage's profile; a sign certificate names this node's member;
3. it chains to a CA approved in the held global configuration (so the
   configuration must have been fetched first: ``secnode sync``);
4. its OCSP status, asked now from the CA's responders, is ``good``.

Only then is it stored. A sign certificate, or the node's first auth certificate,
is put in use at once (older certificates of the same usage are deactivated) and
written to ``certs/<usage>.pem``. A renewed auth certificate, while the one in use is
registered, is stored as *pending* instead: see :mod:`secnode.trust.renewal` for when it
takes over. Each certificate records its own key file (a renewal may bring a new key,
``keys/<usage>-N.key``, kept beside the one still in use).

The OCSP helpers (:func:`fetch_status`, :func:`responder_urls`) are shared with
the background job that keeps the staples fresh (:mod:`secnode.app.jobs`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from certs import chain, ocsp_client, profiles
from certs.errors import SecnodeError
from certs.names import display_name
from certs.ocsp import OCSPError, OCSPStatus
from secnode.core.cert_member import member_id_of
from secnode.core.globalconf import GlobalConf
from secnode.core.jsonfmt import cert_sha256_hex, format_time
from secnode.files import atomic_write
from secnode.globalconf import ConfStore
from secnode.home import USAGES, NodeHome
from secnode.store import models
from secnode.trust.renewal import auth_import_pending

OCSP_TIMEOUT = 10.0


class CertImportError(SecnodeError, ValueError):
    """A certificate was refused; the message says which check failed and what to do."""


@dataclass(frozen=True)
class ImportResult:
    usage: str
    cert: x509.Certificate
    sha256: str
    status: OCSPStatus
    path: Path
    replaced: int  # how many older certificates of this usage were deactivated
    pending: bool = False  # stored, not in use yet (auth renewal: secnode.trust.renewal)


# ----- reading --------------------------------------------------------------------------
def load_cert_bytes(data: bytes, what: str = "certificate") -> x509.Certificate:
    """One certificate, PEM or DER (CAs hand out both)."""
    try:
        if b"-----BEGIN" in data:
            found = x509.load_pem_x509_certificates(data)
            if len(found) != 1:
                raise CertImportError(
                    f"{what} file holds {len(found)} certificates; import one at a time"
                )
            return found[0]
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        if isinstance(exc, CertImportError):
            raise
        raise CertImportError(f"{what} is neither a PEM nor a DER X.509 certificate") from exc


def spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def describe(cert: x509.Certificate) -> str:
    return f"{display_name(cert.subject)} (serial {cert.serial_number:X})"


# ----- the checks (pure given the node's public keys and a configuration) ------------------
def match_key(
    cert: x509.Certificate, candidates: dict[str, list[tuple[Path, bytes]]]
) -> tuple[str, Path]:
    """Which of the node's keys (any usage, any generation) ``cert`` was issued for."""
    mine = spki(cert)
    for usage, keys_of_usage in candidates.items():
        for key_path, key in keys_of_usage:
            if key == mine:
                return usage, key_path
    match_usage(cert, {u: (ks[0][1] if ks else None) for u, ks in candidates.items()})
    raise AssertionError("unreachable: match_usage refuses")  # pragma: no cover


def match_usage(cert: x509.Certificate, public_keys: dict[str, bytes | None]) -> str:
    """Which of the node's keys ``cert`` was issued for (by SubjectPublicKeyInfo)."""
    mine = spki(cert)
    for usage, key in public_keys.items():
        if key is not None and key == mine:
            return usage
    have = [u for u, k in public_keys.items() if k is not None]
    if not have:
        raise CertImportError(
            "this node has no keys yet; run 'secnode keys new --usage auth|sign' and have "
            "the CA issue certificates from the CSRs in keys/"
        )
    raise CertImportError(
        f"certificate {describe(cert)} is not for a key of this node: its public key matches "
        f"neither the {' nor the '.join(have)} key (keys/<usage>.csr); was it issued from "
        "another node's CSR?"
    )


def check_profile(cert: x509.Certificate, usage: str, member: str) -> None:
    """The certificate must have the profile of the key it matches; sign names our member."""
    try:
        profiles.require_profile(cert, usage)
    except profiles.ProfileError as exc:
        raise CertImportError(
            f"wrong profile for the node's {usage} key: {exc}; ask the CA to issue it with "
            f"'--profile {usage}'"
        ) from exc
    if usage == "sign":
        named = str(member_id_of(cert.subject))
        if named != member:
            raise CertImportError(
                f"sign certificate names member {named} in serialNumber, but this node "
                f"belongs to {member}"
            )


def require_conf(store: ConfStore, at: dt.datetime | None = None) -> GlobalConf:
    """The held global configuration, current; import and OCSP checks depend on its CA list."""
    conf = store.load_last_good(at)
    if conf is None:
        raise CertImportError(
            "no global configuration yet: the approved CAs are not known; run 'secnode sync' "
            "(the central registry must be reachable) and import again"
        )
    if conf.is_expired(at):
        raise CertImportError(
            f"the held global configuration (version {conf.version}) expired at "
            f"{format_time(conf.expires_at)}; run 'secnode sync' and import again"
        )
    return conf


def check_chain(
    cert: x509.Certificate, conf: GlobalConf, at: dt.datetime | None = None
) -> x509.Certificate:
    """Return the certificate's direct issuer (an approved CA), or refuse."""
    try:
        path = chain.verify_chain(cert, conf.ca_certs, at=at)
    except chain.ChainError as exc:
        raise CertImportError(
            f"{exc} (global configuration version {conf.version} approves "
            f"{', '.join(ca.name for ca in conf.approved_cas) or 'no CA'})"
        ) from exc
    return path[1]


def responder_urls(cert: x509.Certificate, conf: GlobalConf) -> list[str]:
    """OCSP URLs the configuration lists for the issuing CA, then the certificate's AIA."""
    urls: list[str] = []
    ca = conf.approved_ca_for(cert)
    if ca is not None:
        urls.extend(ca.ocsp_urls)
    urls.extend(u for u in profiles.ocsp_urls(cert) if u not in urls)
    return urls


async def fetch_status(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    urls: Sequence[str],
    freshness_seconds: float,
    session: aiohttp.ClientSession | None = None,
    timeout: float = OCSP_TIMEOUT,
) -> OCSPStatus:
    """Ask each responder in turn (with a nonce) and return the first valid answer.

    Raises :class:`OCSPError` naming every responder's failure when none answers
    validly, so an operator sees at once whether the network or the response is wrong.
    """
    if not urls:
        raise OCSPError(
            f"no OCSP responder known for {describe(cert)}: the global configuration lists "
            "none for its CA and the certificate has no AIA OCSP URL"
        )
    failures: list[str] = []
    for url in urls:
        try:
            request, nonce = ocsp_client.build_request(cert, issuer)
            der = await ocsp_client.fetch(url, request, session=session, timeout=timeout)
            return ocsp_client.validate_response(
                der, cert, issuer, nonce=nonce, max_age=freshness_seconds
            )
        except OCSPError as exc:
            failures.append(f"{url}: {exc}" if url not in str(exc) else str(exc))
    raise OCSPError("; ".join(failures))


# ----- storing -----------------------------------------------------------------------------
def record_status(
    row: models.NodeCertificate, status: OCSPStatus, at: dt.datetime | None = None
) -> None:
    """Copy a validated OCSP answer into the certificate's cache columns."""
    row.ocsp_der = status.raw
    row.ocsp_status = status.status
    row.ocsp_this_update = status.this_update
    row.ocsp_next_update = status.next_update
    row.ocsp_fetched_at = at or dt.datetime.now(dt.UTC)
    row.ocsp_error = None
    row.ocsp_failures = 0


def store_certificate(
    node: NodeHome,
    usage: str,
    cert: x509.Certificate,
    status: OCSPStatus,
    key_file: Path | None = None,
    pending: bool = False,
) -> tuple[int, Path]:
    """Store ``cert``: in use (older ones deactivated) or ``pending`` (the one in use stays).

    Returns (deactivated count, PEM path); a pending certificate replaces an older pending
    one of the same usage and is written to ``certs/<usage>-pending.pem`` only.
    """
    pem = cert.public_bytes(serialization.Encoding.PEM)
    digest = cert_sha256_hex(cert)
    key = key_file or node.dir.key_path(usage)
    with node.session() as s:
        others = s.scalars(
            select(models.NodeCertificate).where(
                models.NodeCertificate.usage == usage,
                models.NodeCertificate.active | models.NodeCertificate.pending,
                models.NodeCertificate.cert_sha256 != digest,
            )
        ).all()
        replaced = [o for o in others if o.active]
        for old in others:  # a newer pending one supersedes an older; the one in use stays
            old.pending = False
            old.active = old.active and pending
        row = s.scalars(
            select(models.NodeCertificate).where(models.NodeCertificate.cert_sha256 == digest)
        ).first()
        if row is None:
            row = models.NodeCertificate(
                usage=usage,
                cert_pem=pem.decode("ascii"),
                cert_sha256=digest,
                subject=display_name(cert.subject),
                serial=f"{cert.serial_number:X}",
                not_after=cert.not_valid_after_utc,
                key_file=str(key.relative_to(node.path)),
            )
            s.add(row)
        row.key_file = str(key.relative_to(node.path))
        row.active, row.pending = not pending, pending
        row.imported_at = models.utcnow()
        record_status(row, status)
    if pending:
        path = node.path / "certs" / f"{usage}-pending.pem"
        atomic_write(path, pem)
        return 0, path
    return len(replaced), node.write_cert_file(usage, cert)


def import_certificate(
    node: NodeHome, data: bytes, at: dt.datetime | None = None, timeout: float = OCSP_TIMEOUT
) -> ImportResult:
    """Run every check, then store; raises :class:`CertImportError` with the first refusal."""
    cert = load_cert_bytes(data)
    usage, key_file = match_key(cert, {u: node.key_candidates(u) for u in USAGES})
    if not key_file.exists():
        raise CertImportError(f"the {usage} key file {key_file} is missing")
    check_profile(cert, usage, str(node.member_id))
    conf = require_conf(ConfStore(node.dir.globalconf_dir), at)
    issuer = check_chain(cert, conf, at)
    freshness = conf.settings.get("ocsp_freshness_seconds", 3600)
    try:
        status = asyncio.run(
            fetch_status(cert, issuer, responder_urls(cert, conf), freshness, timeout=timeout)
        )
    except OCSPError as exc:
        raise CertImportError(
            f"cannot confirm that {describe(cert)} is not revoked: {exc}"
        ) from exc
    if status.status == "revoked":
        reason = f" ({status.revocation_reason})" if status.revocation_reason else ""
        when = format_time(status.revocation_time) if status.revocation_time else "an unknown time"
        raise CertImportError(
            f"certificate {describe(cert)} is revoked{reason} since {when} according to OCSP; "
            "make a new key and CSR"
        )
    if status.status != "good":
        raise CertImportError(
            f"OCSP status of {describe(cert)} is {status.status}: the CA does not know this "
            "certificate"
        )
    pending = usage == "auth" and auth_import_pending(node, conf, cert_sha256_hex(cert))
    replaced, path = store_certificate(node, usage, cert, status, key_file, pending)
    return ImportResult(usage, cert, cert_sha256_hex(cert), status, path, replaced, pending)
