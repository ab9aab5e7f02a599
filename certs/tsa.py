"""RFC 3161 time-stamping authority: the TSA directory and a pure responder.

Files in a TSA directory ``DIR`` (made by ``certs tsa init``):

``tsa.key``   the TSA's private key, encrypted PKCS#8
``tsa.pem``   its certificate, issued by a CA with the ``tsa`` profile
              (critical EKU timeStamping, digitalSignature)
``ca.pem``    the issuing CA's certificate, so clients can be handed the anchor
``tsa.json``  name, policy OID and accuracy
``tsa.db``    SQLite: one row per token issued; its AUTOINCREMENT key is the
              token serial number, so serials stay unique across restarts and
              across processes sharing the directory, and the operator keeps a
              record of what was stamped when (RFC 3628 asks TSAs to log).

:class:`TimeStampAuthority` turns a DER ``TimeStampReq`` into a DER
``TimeStampResp``. It does no I/O besides the serial source, so the node's
tests and the demo can embed it; ``certs.tsa_server`` puts it behind HTTP.
Every structure is built with ``asn1crypto``; the signature over the DER
signed attributes is made through the :class:`certs.keys.Signer` interface.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from asn1crypto import algos as asn1_algos
from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import tsp as asn1_tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs import keys
from certs.errors import SecnodeError
from certs.names import display_name

log = logging.getLogger(__name__)

#: Placeholder policy under the RFC 5612 documentation enterprise number
#: (1.3.6.1.4.1.32473, "Example Enterprise Number for Documentation Use").
#: A production TSA should use an OID under its own arc: ``--policy``.
DEFAULT_POLICY = "1.3.6.1.4.1.32473.1.1"
DEFAULT_ACCURACY_SECONDS = 1

#: Imprint algorithms we stamp, with their digest length. SHA-1 and anything
#: else is refused with ``badAlg``: a collision-prone imprint proves nothing.
DIGEST_SIZES: dict[str, int] = {"sha256": 32, "sha384": 48, "sha512": 64}

CONTENT_TYPE_QUERY = "application/timestamp-query"
CONTENT_TYPE_REPLY = "application/timestamp-reply"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    serial INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after a delete
    gen_time TEXT NOT NULL,
    hash_alg TEXT NOT NULL,
    imprint TEXT NOT NULL                      -- hex
);
"""


class TSAError(SecnodeError):
    """A TSA operation failed or a token did not verify; the message says why."""


class TimeStampResp(asn1_tsp.TimeStampResp):  # type: ignore[misc]
    """``TimeStampResp`` with the token OPTIONAL, as RFC 3161 has it.

    asn1crypto 1.5 marks ``timeStampToken`` mandatory, which makes a rejection
    (status only) impossible to encode or read.
    """

    _fields = [  # noqa: RUF012 - asn1crypto's class-level schema
        ("status", asn1_tsp.PKIStatusInfo),
        ("time_stamp_token", asn1_cms.ContentInfo, {"optional": True}),
    ]


# ----- configuration -------------------------------------------------------------------
@dataclass(frozen=True)
class TSAConfig:
    """Contents of ``tsa.json``."""

    name: str
    policy: str = DEFAULT_POLICY
    accuracy_seconds: int = DEFAULT_ACCURACY_SECONDS

    @classmethod
    def load(cls, directory: str | Path) -> TSAConfig:
        path = Path(directory) / "tsa.json"
        try:
            data = json.loads(path.read_text())
            return cls(
                name=str(data["name"]),
                policy=_check_oid(str(data.get("policy", DEFAULT_POLICY))),
                accuracy_seconds=_check_accuracy(
                    int(data.get("accuracy_seconds", DEFAULT_ACCURACY_SECONDS))
                ),
            )
        except FileNotFoundError as exc:
            raise TSAError(
                f"{directory} is not a TSA directory (no tsa.json); run 'certs tsa init'"
            ) from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise TSAError(f"{path} is invalid: {exc}") from exc

    def save(self, directory: str | Path) -> None:
        (Path(directory) / "tsa.json").write_text(json.dumps(asdict(self), indent=2) + "\n")


def _check_oid(text: str) -> str:
    try:
        x509.ObjectIdentifier(text)
    except ValueError as exc:
        raise TSAError(f"policy {text!r} is not a dotted object identifier") from exc
    return text


def _check_accuracy(seconds: int) -> int:
    if seconds < 0:
        raise TSAError("accuracy must be zero or more seconds")
    return seconds


# ----- serial numbers ------------------------------------------------------------------
class SerialSource(Protocol):
    """Hands out token serial numbers that are never repeated (RFC 3161 §2.4.2)."""

    def allocate(self, gen_time: dt.datetime, hash_name: str, imprint: bytes) -> int: ...


class SerialStore:
    """Serials from ``tsa.db``; safe across threads, processes and restarts.

    A connection per call keeps it usable from executor threads; SQLite's
    write lock serialises concurrent allocations and ``synchronous=FULL``
    makes a serial durable before the token carrying it leaves the TSA.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            with conn:
                yield conn
        finally:
            conn.close()

    def allocate(self, gen_time: dt.datetime, hash_name: str, imprint: bytes) -> int:
        with self._db() as db:
            cur = db.execute(
                "INSERT INTO tokens (gen_time, hash_alg, imprint) VALUES (?, ?, ?)",
                (gen_time.isoformat(), hash_name, imprint.hex()),
            )
            serial = cur.lastrowid
        if serial is None:  # pragma: no cover - sqlite always sets it after an INSERT
            raise TSAError("could not allocate a serial number")
        return serial

    def count(self) -> int:
        with self._db() as db:
            return int(db.execute("SELECT COUNT(*) FROM tokens").fetchone()[0])


class MemorySerials:
    """Serials from a counter: for embedding a throw-away TSA in tests and demos."""

    def __init__(self, start: int = 1) -> None:
        self._counter = itertools.count(start)
        self._lock = threading.Lock()

    def allocate(self, gen_time: dt.datetime, hash_name: str, imprint: bytes) -> int:
        with self._lock:
            return next(self._counter)


# ----- the responder -------------------------------------------------------------------
class _Rejection(Exception):
    """A request the TSA refuses; becomes a ``rejection`` TimeStampResp."""

    def __init__(self, fail_info: str, text: str) -> None:
        super().__init__(text)
        self.fail_info = fail_info
        self.text = text


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TimeStampAuthority:
    """Answers ``TimeStampReq`` DER with ``TimeStampResp`` DER; never raises on bad input.

    ``clock`` is a parameter so tests can pin genTime; the certificate's
    profile is not checked here (see :meth:`from_dir`) so tests can build a
    deliberately wrong TSA.
    """

    def __init__(
        self,
        cert: x509.Certificate,
        signer: keys.Signer,
        *,
        policy: str = DEFAULT_POLICY,
        accuracy_seconds: int = DEFAULT_ACCURACY_SECONDS,
        serials: SerialSource | None = None,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self.cert = cert
        self.signer = signer
        self.policy = _check_oid(policy)
        self.accuracy_seconds = _check_accuracy(accuracy_seconds)
        self.serials: SerialSource = serials or MemorySerials()
        self.clock = clock
        self._cert_der = cert.public_bytes(serialization.Encoding.DER)
        self._asn1_cert = asn1_x509.Certificate.load(self._cert_der)
        self._signature_algorithm = _signature_algorithm(signer.public_key())
        # The parts of every token that depend only on the certificate, encoded once:
        # building them from dicts costs ~10 ms per token in asn1crypto (names are
        # re-parsed and SET OFs re-sorted); a structure loaded from DER dumps its bytes.
        self._ess_attribute_der = self._ess_attribute().dump()
        self._sid_der = asn1_cms.SignerIdentifier(
            {
                "issuer_and_serial_number": {
                    "issuer": _name(cert.issuer),
                    "serial_number": cert.serial_number,
                }
            }
        ).dump()
        self._cert_choice_der = asn1_cms.CertificateChoices({"certificate": self._asn1_cert}).dump()

    @classmethod
    def from_dir(cls, directory: str | Path, passphrase: bytes) -> TimeStampAuthority:
        """Load the TSA in ``directory``, refusing a key/certificate that cannot stamp."""
        base = Path(directory)
        config = TSAConfig.load(base)
        try:
            cert = x509.load_pem_x509_certificate((base / "tsa.pem").read_bytes())
        except (OSError, ValueError) as exc:
            raise TSAError(f"cannot read the TSA certificate {base / 'tsa.pem'}: {exc}") from exc
        signer = keys.SoftwareSigner.from_file(base / "tsa.key", passphrase)
        if signer.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise TSAError(f"{base / 'tsa.key'} does not belong to {base / 'tsa.pem'}")
        require_tsa_eku(cert)
        return cls(
            cert,
            signer,
            policy=config.policy,
            accuracy_seconds=config.accuracy_seconds,
            serials=SerialStore(base / "tsa.db"),
        )

    def respond(self, request_der: bytes) -> bytes:
        """Return a DER TimeStampResp: a token, or a rejection saying why."""
        try:
            request = self._parse(request_der)
            return self._grant(request)
        except _Rejection as exc:
            log.info("time-stamp request rejected: %s (%s)", exc.text, exc.fail_info)
            return rejection(exc.fail_info, exc.text)
        except Exception:
            log.exception("time-stamp request failed inside the TSA")
            return rejection("system_failure", "internal error in the TSA")

    # -- request checks --
    def _parse(self, der: bytes) -> asn1_tsp.TimeStampReq:
        if not der:
            raise _Rejection("bad_data_format", "empty request")
        try:
            request = asn1_tsp.TimeStampReq.load(der, strict=True)
            request.native  # noqa: B018 - forces a full parse so garbage fails here
        except Exception as exc:  # asn1crypto raises many types on garbage
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise _Rejection("bad_data_format", f"not a DER TimeStampReq: {reason}") from exc
        if request["version"].native != "v1":
            raise _Rejection("bad_request", f"unsupported request version {request['version']}")
        imprint = request["message_imprint"]
        hash_name = imprint["hash_algorithm"]["algorithm"].native
        if hash_name not in DIGEST_SIZES:
            raise _Rejection(
                "bad_alg",
                f"hash algorithm {hash_name} not accepted; use {', '.join(DIGEST_SIZES)}",
            )
        digest = imprint["hashed_message"].native
        if len(digest) != DIGEST_SIZES[hash_name]:
            raise _Rejection(
                "bad_data_format",
                f"{hash_name} imprint must be {DIGEST_SIZES[hash_name]} bytes, not {len(digest)}",
            )
        req_policy = request["req_policy"].native
        if req_policy is not None and req_policy != self.policy:
            raise _Rejection(
                "unaccepted_policy", f"policy {req_policy} not offered; this TSA uses {self.policy}"
            )
        if request["extensions"].native:
            raise _Rejection("unaccepted_extensions", "request extensions are not supported")
        return request

    # -- token --
    def _grant(self, request: asn1_tsp.TimeStampReq) -> bytes:
        imprint = request["message_imprint"]
        gen_time = self.clock().astimezone(dt.UTC)
        gen_time = gen_time.replace(microsecond=gen_time.microsecond // 1000 * 1000)
        serial = self.serials.allocate(
            gen_time,
            imprint["hash_algorithm"]["algorithm"].native,
            imprint["hashed_message"].native,
        )
        tst_fields: dict[str, object] = {
            "version": "v1",
            "policy": self.policy,
            "message_imprint": imprint.copy(),
            "serial_number": serial,
            "gen_time": gen_time,
            "tsa": asn1_x509.GeneralName({"directory_name": _name(self.cert.subject)}),
        }
        if self.accuracy_seconds:
            tst_fields["accuracy"] = {"seconds": self.accuracy_seconds}
        if request["nonce"].native is not None:
            tst_fields["nonce"] = request["nonce"].native
        tst_der = asn1_tsp.TSTInfo(tst_fields).dump()
        token = self._sign(tst_der, gen_time, include_cert=bool(request["cert_req"].native))
        log.info("issued time-stamp token serial %d at %s", serial, gen_time.isoformat())
        resp = TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token})
        return bytes(resp.dump())

    def _ess_attribute(self) -> asn1_cms.CMSAttribute:
        """signing-certificate-v2 (RFC 5816): names this TSA's certificate."""
        ess_cert_id = {  # hash_algorithm left out: its DEFAULT is sha256
            "cert_hash": hashlib.sha256(self._cert_der).digest(),
            "issuer_serial": {
                "issuer": [asn1_x509.GeneralName({"directory_name": _name(self.cert.issuer)})],
                "serial_number": self.cert.serial_number,
            },
        }
        return asn1_cms.CMSAttribute(
            {"type": "signing_certificate_v2", "values": [{"certs": [ess_cert_id]}]}
        )

    def _sign(
        self, tst_der: bytes, gen_time: dt.datetime, include_cert: bool
    ) -> asn1_cms.ContentInfo:
        """CMS SignedData over the TSTInfo with the attributes RFC 3161/5816 require."""
        signed_attrs = asn1_cms.CMSAttributes(
            [
                {"type": "content_type", "values": ["tst_info"]},
                {
                    "type": "signing_time",
                    "values": [asn1_cms.Time({"utc_time": gen_time.replace(microsecond=0)})],
                },
                {"type": "message_digest", "values": [hashlib.sha256(tst_der).digest()]},
                asn1_cms.CMSAttribute.load(self._ess_attribute_der),
            ]
        )
        # The signature covers the attributes encoded as a SET (tag 0x31), RFC 5652 §5.4.
        signature = self.signer.sign(signed_attrs.dump())
        signer_info = asn1_cms.SignerInfo(
            {
                "version": "v1",
                "sid": asn1_cms.SignerIdentifier.load(self._sid_der),
                "digest_algorithm": asn1_algos.DigestAlgorithm({"algorithm": "sha256"}),
                "signed_attrs": signed_attrs,
                "signature_algorithm": self._signature_algorithm,
                "signature": signature,
            }
        )
        signed_data: dict[str, object] = {
            "version": "v3",  # eContentType is not id-data (RFC 5652 §5.1)
            "digest_algorithms": [asn1_algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {
                "content_type": "tst_info",
                "content": asn1_core.ParsableOctetString(tst_der),
            },
            "signer_infos": [signer_info],
        }
        if include_cert:
            signed_data["certificates"] = [asn1_cms.CertificateChoices.load(self._cert_choice_der)]
        return asn1_cms.ContentInfo({"content_type": "signed_data", "content": signed_data})


def _name(name: x509.Name) -> asn1_x509.Name:
    """A fresh asn1crypto copy, so no parsed object is shared between two structures."""
    return asn1_x509.Name.load(name.public_bytes())


def _signature_algorithm(public_key: object) -> asn1_algos.SignedDigestAlgorithm:
    """The CMS signatureAlgorithm matching :class:`certs.keys.SoftwareSigner` (SHA-256)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return asn1_algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"})
    if isinstance(public_key, rsa.RSAPublicKey):
        return asn1_algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"})
    raise TSAError(f"unsupported TSA key type {type(public_key).__name__}")


def rejection(fail_info: str, text: str) -> bytes:
    """DER TimeStampResp with status ``rejection`` and one failInfo bit (asn1crypto name)."""
    return bytes(
        TimeStampResp(
            {
                "status": {
                    "status": "rejection",
                    "status_string": [text],
                    "fail_info": {fail_info},
                },
            }
        ).dump()
    )


def require_tsa_eku(cert: x509.Certificate) -> None:
    """RFC 3161 §2.3: exactly one EKU, id-kp-timeStamping, in a critical extension."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound as exc:
        raise TSAError(
            f"TSA certificate lacks critical timeStamping EKU "
            f"({display_name(cert.subject)} has no extended key usage)"
        ) from exc
    if not ext.critical or list(ext.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        found = ", ".join(oid.dotted_string for oid in ext.value)
        raise TSAError(
            f"TSA certificate lacks critical timeStamping EKU "
            f"({display_name(cert.subject)} has {'critical' if ext.critical else 'non-critical'}"
            f" EKU {found})"
        )


# ----- creating a TSA directory --------------------------------------------------------
def init_tsa(
    directory: str | Path,
    ca_dir: str | Path,
    name: str,
    passphrase: bytes,
    *,
    ca_passphrase: bytes | None = None,
    policy: str = DEFAULT_POLICY,
    accuracy_seconds: int = DEFAULT_ACCURACY_SECONDS,
    key_type: str = "ec",
    days: int = 1825,
) -> x509.Certificate:
    """Create ``directory`` with a new key, a ``tsa`` certificate from the CA and config.

    ``passphrase`` encrypts the TSA key; ``ca_passphrase`` (default: the same)
    unlocks the CA key for issuing.
    """
    from certs.ca import CAError, CertificateAuthority

    target = Path(directory)
    for existing in ("tsa.key", "tsa.pem", "tsa.json"):
        if (target / existing).exists():
            raise TSAError(f"{target} already holds a TSA ({existing}); refusing to overwrite it")
    config = TSAConfig(name, _check_oid(policy), _check_accuracy(accuracy_seconds))
    try:
        ca = CertificateAuthority(ca_dir)
    except CAError as exc:
        raise TSAError(str(exc)) from exc
    key = keys.generate_key(key_type)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    try:
        cert = ca.issue(keys.build_csr(key, subject), "tsa", ca_passphrase or passphrase, days=days)
    except CAError as exc:
        raise TSAError(f"the CA refused the TSA certificate: {exc}") from exc
    target.mkdir(parents=True, exist_ok=True)
    keys.write_key(target / "tsa.key", key, passphrase)
    (target / "tsa.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (target / "ca.pem").write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    config.save(target)
    SerialStore(target / "tsa.db")
    return cert
