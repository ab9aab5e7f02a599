"""TLS towards the member's own provider systems (X-Road REST protocol §4.7).

An ``https://`` service is trusted in exactly one chosen way, never by default: its
certificate pinned by SHA-256 (of the DER certificate, the form ``openssl x509
-fingerprint -sha256`` prints), a CA file stored with the service, or, chosen
explicitly, the system CA store. Optionally the node presents its *internal* TLS
client certificate (mutual TLS): a key of its own, apart from the auth and sign
keys (those identify the node to the federation, this one only to the member's own
systems), written under the node passphrase like the others.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs import keys
from certs.errors import SecnodeError
from certs.selfsigned import self_signed
from secnode.files import atomic_write
from secnode.trust.tls import TLS_CIPHERS

#: How a provider system's certificate is checked.
TRUST_MODES = ("pin", "ca", "system")
#: The internal TLS client certificate and its key, relative to the node directory.
INTERNAL_CERT = Path("certs") / "internal-tls.pem"
INTERNAL_KEY = Path("keys") / "internal-tls.key"
INTERNAL_DAYS = 3650

_HEX = re.compile(r"^[0-9a-f]{64}$")


class ProviderTlsError(SecnodeError):
    """A TLS setting for a provider system is unusable; the message says why."""


@dataclass(frozen=True)
class ProviderTls:
    """One service's TLS settings (hashable: the runtime keeps one session per setting)."""

    trust: str
    pin: str | None = None
    ca_pem: str | None = None
    client_cert: bool = False

    def describe(self) -> str:
        """One line for ``service list``: the trust mode and whether mutual TLS is used."""
        if self.trust == "pin":
            text = f"pin {self.pin}"
        elif self.trust == "ca":
            text = f"ca ({len(_certs_of(self.ca_pem or ''))} cert)"
        else:
            text = "system CA store"
        return text + (" + client cert" if self.client_cert else "")


def parse_pin(text: str) -> str:
    """A SHA-256 pin as 64 lowercase hex digits; colons, spaces and ``sha256:`` are allowed."""
    value = text.strip().lower().removeprefix("sha256:").removeprefix("sha256 fingerprint=")
    value = value.replace(":", "").replace(" ", "")
    if not _HEX.match(value):
        raise ProviderTlsError(
            f"--tls-pin {text!r}: give the SHA-256 of the provider's certificate "
            "(64 hex digits, e.g. from 'openssl x509 -noout -fingerprint -sha256')"
        )
    return value


def _certs_of(pem: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem.encode("ascii"))
    except ValueError:
        return []


def load_ca_bundle(path: str | Path) -> str:
    """The PEM text of a CA file (one or more certificates), checked to parse."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProviderTlsError(f"--tls-ca {path}: cannot read it ({exc})") from exc
    found = _certs_of(text)
    if not found:
        raise ProviderTlsError(f"--tls-ca {path}: no PEM certificate in it")
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in found)


def choose(url: str, ca: str | None, pin: str | None, client_cert: bool) -> ProviderTls | None:
    """The TLS setting ``service add`` stores for ``url``; deny by default: an https URL
    needs a pin or a CA (``system`` only when chosen), plain http takes none."""
    if not url.startswith("https://"):
        if ca is not None or pin is not None or client_cert:
            raise ProviderTlsError("--tls-ca, --tls-pin and --tls-client-cert need an https:// URL")
        return None
    if ca is not None and pin is not None:
        raise ProviderTlsError("give one of --tls-ca and --tls-pin, not both")
    if pin is not None:
        return ProviderTls("pin", pin=parse_pin(pin), client_cert=client_cert)
    if ca == "system":
        return ProviderTls("system", client_cert=client_cert)
    if ca is not None:
        return ProviderTls("ca", ca_pem=load_ca_bundle(ca), client_cert=client_cert)
    raise ProviderTlsError(
        "an https:// service needs --tls-pin SHA256 (the provider's certificate) or "
        "--tls-ca FILE (its CA); '--tls-ca system' trusts the system CA store"
    )


# ----- the internal TLS client certificate --------------------------------------------------
def internal_cert_sha256(node_dir: Path) -> str | None:
    """SHA-256 (hex, of the DER) of the internal TLS certificate, if the node has one."""
    path = node_dir / INTERNAL_CERT
    if not path.exists():
        return None
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def ensure_internal_cert(node_dir: Path, node_id: str, passphrase: bytes) -> bool:
    """Make the internal TLS key and self-signed client certificate unless both exist;
    returns whether they were made. The provider system trusts it by its file or hash."""
    cert_path, key_path = node_dir / INTERNAL_CERT, node_dir / INTERNAL_KEY
    if cert_path.exists() and key_path.exists():
        return False
    key, cert = self_signed(
        f"{node_id} internal TLS", INTERNAL_DAYS, ExtendedKeyUsageOID.CLIENT_AUTH
    )
    key_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    keys.write_key(key_path, key, passphrase)
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return True


def provider_context(tls: ProviderTls, node_dir: Path, passphrase: bytes) -> ssl.SSLContext:
    """The TLS context for calls to a provider system with setting ``tls``.

    ``pin``: no chain or name check here, the caller checks the certificate's SHA-256
    before anything is sent (aiohttp's ``Fingerprint``); ``ca``: the stored CA only, and
    the URL's host name; ``system``: the system store and the host name.
    """
    if tls.trust == "pin":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif tls.trust == "ca":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata=tls.ca_pem or "")
    elif tls.trust == "system":
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:
        raise ProviderTlsError(f"unknown TLS trust mode {tls.trust!r}")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS_CIPHERS)
    if tls.client_cert:
        cert_path, key_path = node_dir / INTERNAL_CERT, node_dir / INTERNAL_KEY
        if not (cert_path.exists() and key_path.exists()):
            raise ProviderTlsError(
                f"the internal TLS client certificate ({INTERNAL_CERT}) is missing; "
                "'secnode service tls SERVICE --tls-client-cert' makes it"
            )
        ctx.load_cert_chain(str(cert_path), str(key_path), password=passphrase)
    return ctx
