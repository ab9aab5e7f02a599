"""What the auditor trusts: the trust anchors ``secnode log verify`` checks evidence against.

The auditor does not trust the node. Trust comes from the federation:

* the **configuration anchor** (the central registry's signing certificate,
  handed over out of band; a node directory keeps a copy in
  ``globalconf/anchor.pem``), through which the global configurations held in
  ``globalconf/v*/`` are verified (signature only: an expired copy still says
  which CAs and TSAs were approved when it was issued). Their approved CA
  certificates and approved TSA certificates are the anchors, and their
  ``acceptable_timestamp_failure_period`` / ``ocsp_freshness_seconds`` are the
  verifier's limits;
* and/or CA and TSA certificates given directly in the ``--anchor`` PEM file
  (a CA certificate is one with ``cA=true``; a TSA certificate one with the
  timeStamping extended key usage), for archives checked without a node
  directory.

A certificate in the anchor file that verified a global configuration is a
configuration anchor only; it is never trusted to sign messages or tokens.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs.errors import SecnodeError
from certs.names import display_name
from secnode.core.globalconf import GlobalConf, GlobalConfError, load_pem_certs, verify
from secnode.core.messagelog import TrustAnchors


class AnchorError(SecnodeError):
    """The trust anchors are unusable (missing file, nothing trustworthy in it)."""


@dataclass
class AuditorTrust:
    ca_certs: list[x509.Certificate] = field(default_factory=list)
    tsa_certs: list[x509.Certificate] = field(default_factory=list)
    confs: list[GlobalConf] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def anchors(self) -> TrustAnchors:
        return TrustAnchors(ca_certs=list(self.ca_certs), tsa_certs=list(self.tsa_certs))

    def setting(self, name: str) -> int | None:
        """A setting of the newest verified global configuration, if any was given."""
        if not self.confs:
            return None
        newest = max(self.confs, key=lambda c: c.version)
        value = newest.settings.get(name)
        return int(value) if value is not None else None

    def describe(self) -> str:
        what = f"{len(self.ca_certs)} CA and {len(self.tsa_certs)} TSA certificate(s)"
        if not self.confs:
            return what + " given directly"
        versions = ", ".join(str(c.version) for c in sorted(self.confs, key=lambda c: c.version))
        return what + f" from global configuration version(s) {versions}"


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _is_tsa(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.TIME_STAMPING in usage


def conf_dirs(globalconf_dir: Path) -> list[Path]:
    """Where configuration copies are in ``globalconf_dir``: a node's layout (``v*/``), what
    ``central conf export --out-dir`` writes (``conf.json`` + ``conf.sig`` in the directory
    itself), or several such exports side by side (one per subdirectory)."""
    found = [globalconf_dir] if (globalconf_dir / "conf.json").is_file() else []
    found += sorted(p for p in globalconf_dir.iterdir() if p.is_dir() and not p.is_symlink())
    return [d for d in found if (d / "conf.json").is_file() and (d / "conf.sig").is_file()]


def held_confs(
    globalconf_dir: Path, anchors: list[x509.Certificate], problems: list[str] | None = None
) -> list[GlobalConf]:
    """Every global configuration kept in ``globalconf_dir`` that the anchors verify.

    ``problems`` collects why a copy was not used (so a refusal can say what to fix).
    """
    confs: dict[int, GlobalConf] = {}
    for version_dir in conf_dirs(globalconf_dir):
        doc, sig = version_dir / "conf.json", version_dir / "conf.sig"
        try:
            conf = verify(doc.read_bytes(), sig.read_bytes(), anchors, allow_expired=True)
        except GlobalConfError as exc:
            if problems is not None:
                problems.append(f"{version_dir}: {exc}")
            continue
        confs[conf.version] = conf
    return [confs[v] for v in sorted(confs)]


def load_trust(anchor_file: Path, globalconf_dir: Path | None = None) -> AuditorTrust:
    """Trust anchors from ``anchor_file`` (and the configurations in ``globalconf_dir``)."""
    try:
        given = load_pem_certs(anchor_file.read_bytes())
    except OSError as exc:
        raise AnchorError(f"cannot read the trust anchor file {anchor_file}: {exc}") from exc
    except GlobalConfError as exc:
        raise AnchorError(f"{anchor_file}: {exc}") from exc
    trust = AuditorTrust()
    problems: list[str] = []
    if globalconf_dir is not None and globalconf_dir.is_dir():
        trust.confs = held_confs(globalconf_dir, given, problems)
    signers = {_der(c.signer) for c in trust.confs}
    seen: set[bytes] = set()

    def add(bucket: list[x509.Certificate], cert: x509.Certificate) -> None:
        if _der(cert) not in seen:
            seen.add(_der(cert))
            bucket.append(cert)

    for conf in trust.confs:
        for ca in conf.ca_certs:
            add(trust.ca_certs, ca)
        for tsa in conf.tsas:
            add(trust.tsa_certs, tsa.cert)
    for cert in given:
        if _der(cert) in signers:
            continue
        if _is_ca(cert):
            add(trust.ca_certs, cert)
        elif _is_tsa(cert):
            add(trust.tsa_certs, cert)
        else:
            trust.notes.append(
                f"ignored {display_name(cert.subject)} in {anchor_file}: "
                "neither a CA nor a TSA certificate, nor the signer of a held "
                "global configuration"
            )
    if not trust.ca_certs:
        where = f" or in the global configurations in {globalconf_dir}" if globalconf_dir else ""
        hint = ""
        if globalconf_dir is not None and problems:
            hint = f" (not verified by the anchor: {'; '.join(problems)})"
        elif globalconf_dir is not None:
            hint = (
                f" ({globalconf_dir} holds no conf.json with conf.sig: give a node's globalconf/ "
                "directory or what 'central conf export --out-dir DIR' wrote)"
            )
        raise AnchorError(f"no CA certificate to trust: none in {anchor_file}{where}{hint}")
    return trust


def grace_period(trust: AuditorTrust, default: dt.timedelta) -> dt.timedelta:
    value = trust.setting("acceptable_timestamp_failure_period")
    return dt.timedelta(seconds=value) if value else default
