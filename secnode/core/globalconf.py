"""The global configuration format: parse, verify and look up (pure; shared by node and registry).

Format (written by ``central``; see ``docs/central.md``): one canonical JSON
document (sorted keys, no whitespace, UTF-8) and a detached CMS SignedData
signature over its exact bytes by the registry's configuration signing key.

Pure: bytes, anchor certificates and a time in, a verified view
(:class:`GlobalConf`) or :class:`GlobalConfError` out. Fetching and the node's
copy on disk are in :mod:`secnode.globalconf`.

Key rotation: a document may announce ``next_anchors``. A node accepts a
document signed by one of those certificates only if the document it already
holds (verified by its anchor) announced it, and then makes that certificate
its anchor (:meth:`secnode.globalconf.ConfStore.refresh`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from certs.cms import CMSError, verify_detached
from certs.errors import SecnodeError
from certs.names import display_name
from secnode.core import jsonfmt
from secnode.core.identifiers import (
    ClientId,
    IdentifierError,
    MemberId,
    NodeId,
    SubsystemId,
    parse_client,
)
from secnode.core.jsonfmt import FormatError, canonical_json, cert_der, cert_sha256_hex, format_time

FORMAT = "secnode-globalconf/1"
#: Far above any real federation (thousands of members); refuses memory exhaustion.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
MAX_SIGNATURE_BYTES = 64 * 1024
VERSION_HEADER = "X-Globalconf-Version"

#: Global settings and X-Road's defaults (ug-syspar §3.7, §4.2); every document carries all.
SETTINGS_DEFAULTS: dict[str, int] = {
    "conf_validity_seconds": 600,
    "conf_refresh_interval": 60,
    "ocsp_freshness_seconds": 3600,
    "ocsp_fetch_interval": 1200,
    "timestamping_interval": 60,
    "acceptable_timestamp_failure_period": 14400,
}

_TOP_KEYS = {
    "format",
    "instance",
    "version",
    "generated_at",
    "expires_at",
    "members",
    "nodes",
    "approved_cas",
    "approved_tsas",
    "groups",
    "settings",
    "next_anchors",
}


class GlobalConfError(SecnodeError):
    """A global configuration is refused; ``reason`` says which check failed.

    Reasons: ``malformed``, ``signature``, ``untrusted_signer``, ``expired``,
    ``rollback``, ``instance``, ``unavailable``. ``code`` is the X-Road style
    error code a node reports (``OutdatedGlobalConf`` when expired).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = "OutdatedGlobalConf" if reason == "expired" else "InvalidGlobalConf"


# ----- canonical form and small helpers ---------------------------------------------------
def parse_time(text: object, what: str) -> dt.datetime:
    try:
        return jsonfmt.parse_time(text, what)
    except FormatError as exc:
        raise GlobalConfError("malformed", str(exc)) from exc


def cert_to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_pem_certs(data: bytes) -> list[x509.Certificate]:
    """All certificates in a PEM bundle (an anchor file may hold more than one)."""
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise GlobalConfError("malformed", f"not a PEM certificate bundle: {exc}") from exc


def _pem_cert(text: Any, what: str) -> x509.Certificate:
    if not isinstance(text, str):
        raise GlobalConfError("malformed", f"{what} is not a PEM string")
    try:
        return x509.load_pem_x509_certificate(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise GlobalConfError("malformed", f"{what} is not a PEM certificate: {exc}") from exc


def _str(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise GlobalConfError("malformed", f"{what}: '{key}' must be a string")
    return value


def _list(obj: Mapping[str, Any], key: str, what: str) -> list[Any]:
    value = obj.get(key)
    if not isinstance(value, list):
        raise GlobalConfError("malformed", f"{what}: '{key}' must be a list")
    return value


def _ident(parse: Any, text: Any, what: str) -> Any:
    try:
        return parse(text)
    except IdentifierError as exc:
        raise GlobalConfError("malformed", f"{what}: {exc}") from exc


# ----- the verified view ------------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    id: MemberId
    name: str
    subsystems: tuple[SubsystemId, ...]


@dataclass(frozen=True)
class ConfNode:
    id: NodeId
    owner: MemberId
    address: str
    auth_cert_sha256: str
    auth_cert_pem: str = field(repr=False)
    #: Older auth certificates still registered for this node, as (sha256, PEM): during a
    #: renewal the registry lists both, so peers accept the node on either while it switches.
    previous_auth_certs: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def auth_cert(self) -> x509.Certificate:
        """The newest registered auth certificate (the one the node is expected to present)."""
        return x509.load_pem_x509_certificate(self.auth_cert_pem.encode("ascii"))

    @property
    def auth_cert_hashes(self) -> tuple[str, ...]:
        """Every registered auth certificate's SHA-256, newest first."""
        return (self.auth_cert_sha256, *(sha for sha, _ in self.previous_auth_certs))

    @property
    def auth_certs(self) -> tuple[x509.Certificate, ...]:
        """For TLS pinning: the node may present any of these (newest first)."""
        pems = (self.auth_cert_pem, *(pem for _, pem in self.previous_auth_certs))
        return tuple(x509.load_pem_x509_certificate(p.encode("ascii")) for p in pems)

    def has_auth_cert(self, digest: str) -> bool:
        return digest.lower() in self.auth_cert_hashes


@dataclass(frozen=True)
class ApprovedCA:
    name: str
    cert: x509.Certificate
    ocsp_urls: tuple[str, ...]


@dataclass(frozen=True)
class ApprovedTSA:
    name: str
    url: str
    cert: x509.Certificate


@dataclass(frozen=True)
class GlobalGroup:
    code: str
    description: str
    members: tuple[ClientId, ...]


@dataclass(frozen=True)
class GlobalConf:
    """A verified global configuration; build it with :func:`verify`, not directly."""

    document: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    signer: x509.Certificate = field(repr=False)
    instance: str
    version: int
    generated_at: dt.datetime
    expires_at: dt.datetime
    members: dict[MemberId, Member] = field(repr=False)
    nodes: tuple[ConfNode, ...] = field(repr=False)
    approved_cas: tuple[ApprovedCA, ...] = field(repr=False)
    tsas: tuple[ApprovedTSA, ...] = field(repr=False)
    groups: dict[str, GlobalGroup] = field(repr=False)
    settings: dict[str, int] = field(repr=False)
    next_anchors: tuple[x509.Certificate, ...] = field(repr=False)

    # -- expiry --
    def is_expired(self, at: dt.datetime | None = None) -> bool:
        return (at or dt.datetime.now(dt.UTC)) > self.expires_at

    def check_current(self, at: dt.datetime | None = None) -> None:
        """Raise ``OutdatedGlobalConf`` once expired: a node stops exchanging then."""
        if self.is_expired(at):
            raise GlobalConfError(
                "expired",
                f"global configuration version {self.version} expired at "
                f"{format_time(self.expires_at)}",
            )

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    # -- lookups --
    @property
    def subsystems(self) -> tuple[SubsystemId, ...]:
        return tuple(s for m in self.members.values() for s in m.subsystems)

    def has_client(self, client: ClientId) -> bool:
        """Whether a member or subsystem is registered."""
        if isinstance(client, MemberId):
            return client in self.members
        member = self.members.get(client.member)
        return member is not None and client in member.subsystems

    def node(self, node_id: NodeId) -> ConfNode | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def node_for_member(self, member: MemberId | SubsystemId) -> list[ConfNode]:
        """The nodes that serve ``member`` (a subsystem is served by its member's nodes)."""
        owner = member.member
        return [n for n in self.nodes if n.owner == owner]

    def is_auth_cert_registered(
        self, cert: x509.Certificate | str, member: MemberId | SubsystemId
    ) -> bool:
        """Whether ``cert`` (or its SHA-256 hex) is the auth certificate of a node of ``member``."""
        digest = cert_sha256_hex(cert) if isinstance(cert, x509.Certificate) else cert.lower()
        return any(n.has_auth_cert(digest) for n in self.node_for_member(member))

    @property
    def ca_certs(self) -> list[x509.Certificate]:
        return [ca.cert for ca in self.approved_cas]

    def approved_ca_for(self, cert: x509.Certificate) -> ApprovedCA | None:
        """The approved CA that directly issued ``cert`` (or ``cert`` itself if it is one).

        Only the issuing relation is checked here; full path validation at a given
        time is :func:`certs.chain.verify_chain` with :attr:`ca_certs`.
        """
        der = cert.public_bytes(serialization.Encoding.DER)
        for ca in self.approved_cas:
            if ca.cert.public_bytes(serialization.Encoding.DER) == der:
                return ca
            if ca.cert.subject == cert.issuer:
                try:
                    cert.verify_directly_issued_by(ca.cert)
                except (ValueError, TypeError, InvalidSignature):
                    continue
                return ca
        return None

    def is_tsa_approved(self, tsa: x509.Certificate | str) -> bool:
        """By TSA certificate, or by URL as configured."""
        if isinstance(tsa, x509.Certificate):
            digest = cert_sha256_hex(tsa)
            return any(cert_sha256_hex(t.cert) == digest for t in self.tsas)
        return any(t.url == tsa for t in self.tsas)

    def group(self, code: str) -> GlobalGroup | None:
        return self.groups.get(code)

    def groups_of(self, client: ClientId) -> list[str]:
        return sorted(g.code for g in self.groups.values() if client in g.members)


def _previous_auth_certs(raw: dict[str, Any], nid: NodeId) -> tuple[tuple[str, str], ...]:
    """Optional ``previous_auth_certs`` of a node entry (absent in documents before renewals
    kept the old certificate): a list of ``{"sha256", "cert"}``; the hash must match the PEM."""
    entries = raw.get("previous_auth_certs", [])
    if not isinstance(entries, list):
        raise GlobalConfError("malformed", f"node {nid} previous_auth_certs is not a list")
    out = []
    for entry in entries:
        what = f"node {nid} previous auth certificate"
        if not isinstance(entry, dict):
            raise GlobalConfError("malformed", f"{what} is not an object")
        cert = _pem_cert(entry.get("cert"), what)
        digest = _str(entry, "sha256", what).lower()
        if cert_sha256_hex(cert) != digest:
            raise GlobalConfError("malformed", f"{what}: sha256 does not match the certificate")
        out.append((digest, _str(entry, "cert", what)))
    return tuple(out)


def _parse_document(data: Any) -> dict[str, Any]:
    """Field-level checks; returns the keyword arguments for :class:`GlobalConf`."""
    if not isinstance(data, dict):
        raise GlobalConfError("malformed", "global configuration is not a JSON object")
    missing = sorted(_TOP_KEYS - set(data))
    if missing:
        raise GlobalConfError("malformed", f"global configuration lacks {', '.join(missing)}")
    if data["format"] != FORMAT:
        raise GlobalConfError(
            "malformed", f"unsupported format {data['format']!r}; this node reads {FORMAT}"
        )
    version = data["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise GlobalConfError("malformed", "version must be a positive integer")
    anchors = tuple(_pem_cert(p, "next anchor") for p in _list(data, "next_anchors", "document"))
    return {
        "instance": _str(data, "instance", "global configuration"),
        "version": version,
        "generated_at": parse_time(data["generated_at"], "generated_at"),
        "expires_at": parse_time(data["expires_at"], "expires_at"),
        "members": _parse_members(data),
        "nodes": _parse_nodes(data),
        "approved_cas": _parse_cas(data),
        "tsas": _parse_tsas(data),
        "groups": _parse_groups(data),
        "settings": _parse_settings(data),
        "next_anchors": anchors,
    }


def _parse_members(data: dict[str, Any]) -> dict[MemberId, Member]:
    members: dict[MemberId, Member] = {}
    for raw in _list(data, "members", "global configuration"):
        mid = _ident(MemberId.parse, raw.get("id") if isinstance(raw, dict) else None, "member")
        subs = tuple(
            _ident(SubsystemId.parse, s, f"member {mid} subsystem")
            for s in _list(raw, "subsystems", f"member {mid}")
        )
        if any(s.member != mid for s in subs):
            raise GlobalConfError("malformed", f"member {mid} lists another member's subsystem")
        members[mid] = Member(mid, _str(raw, "name", f"member {mid}"), subs)
    return members


def _parse_nodes(data: dict[str, Any]) -> tuple[ConfNode, ...]:
    nodes = []
    for raw in _list(data, "nodes", "global configuration"):
        if not isinstance(raw, dict):
            raise GlobalConfError("malformed", "node entry is not an object")
        nid = _ident(NodeId.parse, raw.get("id"), "node")
        owner = _ident(MemberId.parse, raw.get("owner"), f"node {nid} owner")
        if owner != nid.member:
            raise GlobalConfError("malformed", f"node {nid} has owner {owner}")
        nodes.append(
            ConfNode(
                nid,
                owner,
                _str(raw, "address", f"node {nid}"),
                _str(raw, "auth_cert_sha256", f"node {nid}").lower(),
                _str(raw, "auth_cert", f"node {nid}"),
                _previous_auth_certs(raw, nid),
            )
        )
    return tuple(nodes)


def _parse_cas(data: dict[str, Any]) -> tuple[ApprovedCA, ...]:
    return tuple(
        ApprovedCA(
            _str(raw, "name", "approved CA"),
            _pem_cert(raw.get("cert"), "approved CA"),
            tuple(str(u) for u in _list(raw, "ocsp_urls", "approved CA")),
        )
        for raw in _list(data, "approved_cas", "global configuration")
    )


def _parse_tsas(data: dict[str, Any]) -> tuple[ApprovedTSA, ...]:
    return tuple(
        ApprovedTSA(
            _str(raw, "name", "approved TSA"),
            _str(raw, "url", "approved TSA"),
            _pem_cert(raw.get("cert"), "approved TSA"),
        )
        for raw in _list(data, "approved_tsas", "global configuration")
    )


def _parse_groups(data: dict[str, Any]) -> dict[str, GlobalGroup]:
    groups = {}
    for raw in _list(data, "groups", "global configuration"):
        code = _str(raw, "code", "global group")
        clients = tuple(
            _ident(parse_client, c, f"group {code} member")
            for c in _list(raw, "members", f"group {code}")
        )
        groups[code] = GlobalGroup(code, _str(raw, "description", f"group {code}"), clients)
    return groups


def _parse_settings(data: dict[str, Any]) -> dict[str, int]:
    settings = data["settings"]
    if not isinstance(settings, dict) or not all(
        isinstance(settings.get(k), int) and settings[k] > 0 for k in SETTINGS_DEFAULTS
    ):
        raise GlobalConfError(
            "malformed", f"settings must give positive integers for {', '.join(SETTINGS_DEFAULTS)}"
        )
    return dict(settings)


def _describe(cert: x509.Certificate) -> str:
    return f"{display_name(cert.subject)} (sha256 {cert_sha256_hex(cert)[:16]}...)"


def trusted_signers(
    anchors: Sequence[x509.Certificate], held: GlobalConf | None
) -> list[x509.Certificate]:
    """The node's anchors plus the next anchors its held (verified) configuration announced."""
    return [*anchors, *(held.next_anchors if held is not None else ())]


def verify(
    document: bytes,
    signature: bytes,
    anchors: Sequence[x509.Certificate],
    *,
    held: GlobalConf | None = None,
    at: dt.datetime | None = None,
    instance: str | None = None,
    allow_expired: bool = False,
) -> GlobalConf:
    """Verify a global configuration and return its view, or raise :class:`GlobalConfError`.

    Refuses: a signature that does not verify over the exact bytes; a signer that is
    neither an anchor nor a next anchor announced by ``held``; a document that is
    not in canonical form or not well formed; another ``instance``; an expired
    document (unless ``allow_expired``, used to reload the last copy from disk);
    a version lower than ``held``'s, or ``held``'s version with other content.
    """
    when = at or dt.datetime.now(dt.UTC)
    if len(document) > MAX_DOCUMENT_BYTES or len(signature) > MAX_SIGNATURE_BYTES:
        raise GlobalConfError("malformed", "global configuration or signature is too large")
    try:
        verified = verify_detached(signature, document)
    except CMSError as exc:
        raise GlobalConfError(
            "signature", f"global configuration signature does not verify: {exc}"
        ) from exc
    signer = verified.signer
    trusted = trusted_signers(anchors, held)
    if not any(cert_der(signer) == cert_der(a) for a in trusted):
        raise GlobalConfError(
            "untrusted_signer",
            f"global configuration is signed by {_describe(signer)}, which is not the "
            "configuration anchor" + ("" if held is None else " nor an announced next anchor"),
        )
    if not signer.not_valid_before_utc <= when <= signer.not_valid_after_utc:
        raise GlobalConfError(
            "untrusted_signer", f"configuration anchor {_describe(signer)} is not valid now"
        )
    try:
        data = json.loads(document.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GlobalConfError("malformed", f"global configuration is not JSON: {exc}") from exc
    if canonical_json(data) != document:
        raise GlobalConfError("malformed", "global configuration is not in canonical JSON form")
    try:
        fields = _parse_document(data)
    except (AttributeError, TypeError, KeyError) as exc:  # an entry of the wrong JSON type
        raise GlobalConfError("malformed", f"global configuration is malformed: {exc}") from exc
    conf = GlobalConf(document=document, signature=signature, signer=signer, **fields)
    if instance is not None and conf.instance != instance:
        raise GlobalConfError(
            "instance", f"global configuration is for instance {conf.instance}, not {instance}"
        )
    if not allow_expired:
        conf.check_current(when)
    if held is not None:
        if conf.version < held.version:
            raise GlobalConfError(
                "rollback",
                f"rollback refused: version {conf.version} is older than the held version "
                f"{held.version}",
            )
        if conf.version == held.version and conf.document != held.document:
            raise GlobalConfError(
                "rollback", f"version {conf.version} reissued with different content; refused"
            )
    return conf


def setting(conf: GlobalConf | None, name: str) -> int:
    """A registry-wide setting from ``conf``, or its documented default (no conf yet)."""
    if conf is not None and name in conf.settings:
        return int(conf.settings[name])
    return SETTINGS_DEFAULTS[name]
