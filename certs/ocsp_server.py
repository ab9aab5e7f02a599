"""OCSP responder over HTTP (RFC 6960 Appendix A): aiohttp edge around :class:`OCSPResponder`.

``build_ocsp_app`` returns a plain ``web.Application`` so the node and the demo
can mount it in-process; ``certs ocsp serve`` runs it standalone.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import logging
import time
from pathlib import Path
from urllib.parse import unquote

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp

from certs import keys, logs, metrics
from certs.ca import CertificateAuthority, cert_pem, serial_hex
from certs.names import display_name
from certs.ocsp import Answer, OCSPResponder, Revocation

log = logging.getLogger("certs.ocsp")

CONTENT_TYPE = "application/ocsp-response"
#: A single-certificate request is ~100 bytes; anything near this is not OCSP.
MAX_REQUEST_BYTES = 64 * 1024
#: Re-issue the delegated signing certificate at start-up when it expires sooner than this.
RENEW_BEFORE = dt.timedelta(days=7)
RESPONDER_DAYS = 365

RESPONDER_KEY = web.AppKey("ocsp_responder", OCSPResponder)
METRICS_KEY = web.AppKey("ocsp_metrics", metrics.ServerMetrics)


def ensure_responder_cert(
    ca: CertificateAuthority, passphrase: bytes
) -> tuple[x509.Certificate, keys.PrivateKey]:
    """Load ``ocsp.pem``/``ocsp.key`` from the CA directory, creating or renewing them.

    The delegated signer (RFC 6960 §4.2.2.2) keeps the CA key out of the
    responder's hot path: after start-up only ``ocsp.key`` is in memory.
    """
    cert_path, key_path = ca.dir / "ocsp.pem", ca.dir / "ocsp.key"
    if key_path.exists():
        key = keys.load_key(key_path, passphrase)
    else:
        key = keys.generate_key("ec")
        keys.write_key(key_path, key, passphrase)
        cert_path.unlink(missing_ok=True)  # a certificate without its key is useless
    if cert_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if _usable(cert, key, ca.cert):
            return cert, key
        log.info("OCSP signing certificate %s is unusable or expiring; re-issuing", cert_path)
    subject = x509.Name(
        [x509.NameAttribute(x509.NameOID.COMMON_NAME, f"{ca.name or 'CA'} OCSP Responder")]
    )
    cert = ca.issue(keys.build_csr(key, subject), "ocsp", passphrase, days=RESPONDER_DAYS)
    cert_path.write_bytes(cert_pem(cert))
    log.info(
        "issued OCSP signing certificate serial %s -> %s", serial_hex(cert.serial_number), cert_path
    )
    return cert, key


def _usable(cert: x509.Certificate, key: keys.PrivateKey, issuer: x509.Certificate) -> bool:
    def spki(k: object) -> bytes:
        return k.public_bytes(  # type: ignore[attr-defined, no-any-return]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    if spki(cert.public_key()) != spki(key.public_key()) or cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # any failure means 'not ours'
        return False
    return cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_BEFORE


def load_responder(ca_dir: str | Path, passphrase: bytes, validity: int = 3600) -> OCSPResponder:
    """An :class:`OCSPResponder` for the CA in ``ca_dir``, reading ``ca.db`` on every request."""
    ca = CertificateAuthority(ca_dir)
    cert, key = ensure_responder_cert(ca, passphrase)

    def lookup(serial: int) -> Revocation | None:
        status = ca.status(serial)
        return None if status is None else Revocation(status.revoked_at, status.reason)

    return OCSPResponder(ca.cert, cert, key, lookup, validity=validity)


def decode_get_path(raw_path: str) -> bytes | None:
    """The DER request in a GET path ``[/prefix...]/{url-encoded base64}`` (RFC 6960 A.1).

    Base64 may itself contain ``/`` (clients do not always percent-encode it),
    so the longest path suffix that decodes to an OCSP request wins.
    """
    parts = unquote(raw_path).split("/")
    for start in range(len(parts)):
        candidate = "/".join(parts[start:]).strip()
        if not candidate:
            continue
        candidate = candidate.replace("-", "+").replace("_", "/")  # tolerate base64url
        candidate += "=" * (-len(candidate) % 4)
        try:
            der = base64.b64decode(candidate, validate=True)
            ocsp.load_der_ocsp_request(der)
        except (binascii.Error, ValueError):
            continue
        except NotImplementedError:  # several certificates: parseable, answered as malformed
            pass
        return der
    return None


async def _answer(request: web.Request, der: bytes) -> web.Response:
    started = time.perf_counter()
    responder = request.app[RESPONDER_KEY]
    try:
        # Signing and the SQLite lookup block; keep them off the event loop.
        answer = await asyncio.to_thread(responder.respond, der)
    except Exception:
        log.exception("OCSP responder failed")
        answer = Answer(
            OCSPResponder.error(ocsp.OCSPResponseStatus.INTERNAL_ERROR), "internalError"
        )
    serial = serial_hex(answer.serial) if answer.serial is not None else "-"
    with logs.scope(client=request.remote):
        log.info("OCSP %s serial=%s status=%s", request.method, serial, answer.status)
    request.app[METRICS_KEY].observe(answer.status, started)
    return web.Response(body=answer.der, content_type=CONTENT_TYPE)


async def _handle_post(request: web.Request) -> web.Response:
    return await _answer(request, await request.read())


async def _handle_get(request: web.Request) -> web.Response:
    return await _answer(request, decode_get_path(request.rel_url.raw_path) or b"")


def build_ocsp_app(ca_dir: str | Path, passphrase: bytes, validity: int = 3600) -> web.Application:
    """The responder as an aiohttp application answering at any path (GET and POST).

    Creates the delegated signing certificate on first use (needs the CA
    passphrase); raises :class:`~certs.ca.CAError` or ``keys.KeyFileError`` when
    the directory or the passphrase is wrong.
    """
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    responder = load_responder(ca_dir, passphrase, validity)
    app[RESPONDER_KEY] = responder
    registry = metrics.new_registry()
    app[METRICS_KEY] = metrics.ServerMetrics(registry, "ocsp", "OCSP requests")
    signer, issuer = responder.responder_cert, responder.issuer
    registry.register(
        metrics.CertificateExpiry(
            "ocsp_certificate_expiry_seconds",
            "Seconds until the certificate expires (negative: expired), per certificate.",
            ["role", "serial"],
            lambda: [
                (("signer", metrics.serial_label(signer)), signer),
                (("issuer", metrics.serial_label(issuer)), issuer),
            ],
        )
    )
    # Before the catch-all GET: "/metrics" is not base64 of an OCSP request anyway.
    app.router.add_get("/metrics", metrics.metrics_handler(registry))
    app.router.add_post("/{tail:.*}", _handle_post)
    app.router.add_get("/{tail:.*}", _handle_get)
    return app


def serve(ca_dir: str | Path, host: str, port: int, passphrase: bytes, validity: int) -> None:
    """Run the responder until SIGINT/SIGTERM."""
    app = build_ocsp_app(ca_dir, passphrase, validity)
    responder = app[RESPONDER_KEY]
    log.info(
        "OCSP responder for %s on http://%s:%d/ (signer serial %s, validity %d s)",
        display_name(responder.issuer.subject),
        host,
        port,
        serial_hex(responder.responder_cert.serial_number),
        validity,
    )

    async def stopped(_app: web.Application) -> None:
        log.info("OCSP responder on %s:%d stopped", host, port)

    app.on_cleanup.append(stopped)
    web.run_app(app, host=host, port=port, print=None, access_log=None)
