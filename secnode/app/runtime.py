"""Everything a running node holds in memory: configuration, keys, caches, sessions.

The message path reads only from this object (no database round trip per
message except the log). Background jobs refresh it: the global configuration,
the OCSP staples for the node's own certificates, and the service/ACL snapshot
(re-read from the database so CLI changes apply without a restart, and several
node processes sharing one database see the same rights).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from cryptography import x509
from sqlalchemy import select

from certs import keys
from secnode.app.admin import cert_view
from secnode.app.memory import trim_after_burst
from secnode.app.metrics import NodeMetrics
from secnode.core.globalconf import ConfNode, GlobalConf, GlobalConfError
from secnode.core.health import CertView
from secnode.core.identifiers import MemberId, ServiceId, SubsystemId
from secnode.core.msgsig import MessageSigner, SignatureVerifier
from secnode.files import atomic_write
from secnode.globalconf import ConfStore
from secnode.home import NodeHome
from secnode.proxy.budget import InFlightBudget
from secnode.proxy.hooks import AllowAll, DecisionPoint, EventSink, NullSink
from secnode.proxy.peer_client import PeerClient
from secnode.store import models
from secnode.store.replay import ReplayWindow
from secnode.trust.provider_tls import ProviderTls, provider_context
from secnode.trust.signers import TrustCache
from secnode.trust.tls import pinned_client_context

if TYPE_CHECKING:
    from secnode.app.extensions import Extension

log = logging.getLogger("secnode.app.runtime")


@dataclass(frozen=True)
class LoadedCertificates:
    """The node's active certificates and the signer of the sign certificate, read together."""

    auth: OwnCertificate | None
    sign: OwnCertificate | None
    signer: MessageSigner | None


@dataclass(frozen=True)
class ServiceEntry:
    id: int
    service: ServiceId
    type: str
    url: str
    timeout: float
    openapi: str | None
    log_bodies: bool | None
    grants: frozenset[str]
    wsdl: str | None = None
    """A SOAP service's stored WSDL, served by the getWsdl metaservice."""
    tls: ProviderTls | None = None
    """How an https:// provider system is trusted (None: plain http)."""


@dataclass
class ServiceTable:
    """Services this node provides and who may call them (snapshot of the database)."""

    by_id: dict[ServiceId, ServiceEntry] = field(default_factory=dict)
    whitelist: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def find(self, service: ServiceId) -> ServiceEntry | None:
        entry = self.by_id.get(service)
        if entry is None and service.version is None:
            return None
        return entry

    def for_provider(self, provider: SubsystemId | MemberId) -> list[ServiceEntry]:
        """The services of one subsystem, or a member's own services (no subsystem)."""
        return [e for e in self.by_id.values() if e.service.provider == provider]


def load_service_table(node: NodeHome) -> ServiceTable:
    table = ServiceTable()
    member = node.member_id
    with node.sessions() as s:
        grants: dict[int, set[str]] = {}
        for right in s.scalars(select(models.AccessRight)):
            grants.setdefault(right.service_id, set()).add(right.client)
        for svc in s.scalars(select(models.Service)):
            owner = SubsystemId.of(member, svc.subsystem) if svc.subsystem else member
            sid = ServiceId.of(owner, svc.service_code, svc.version or None)
            table.by_id[sid] = ServiceEntry(
                svc.id,
                sid,
                svc.type,
                svc.url,
                svc.timeout,
                svc.openapi,
                svc.log_bodies,
                frozenset(grants.get(svc.id, ())),
                svc.wsdl,
                None
                if svc.tls_trust is None
                else ProviderTls(svc.tls_trust, svc.tls_pin, svc.tls_ca, bool(svc.tls_client_cert)),
            )
        for w in s.scalars(select(models.ClientWhitelist)):
            table.whitelist.setdefault(w.subsystem, []).append((w.kind, w.value))
    return table


@dataclass
class OwnCertificate:
    cert: x509.Certificate
    cert_der: bytes
    ocsp_der: bytes | None
    ocsp_status: str | None
    ocsp_this_update: dt.datetime | None
    ocsp_next_update: dt.datetime | None = None
    #: The row as ``/health`` judges it, so the message path and ``/health`` give one answer
    #: (see :mod:`secnode.trust.own_status`); also tells the OCSP job when the row moved on.
    view: CertView | None = None
    #: The PEM and key TLS loads for this very certificate (a renewal may bring a new key, and
    #: another process may already have switched ``certs/auth.pem``: never mix the two).
    cert_file: Path | None = None
    key_file: Path | None = None


def own_cert_file(node: NodeHome, row: models.NodeCertificate) -> Path:
    """``certs/<usage>-<sha256 prefix>.pem``, written from the database if missing."""
    path = node.path / "certs" / f"{row.usage}-{row.cert_sha256[:16]}.pem"
    if not path.exists() or path.read_text() != row.cert_pem:
        atomic_write(path, row.cert_pem.encode("ascii"))
    return path


class NodeRuntime:
    """The running node's state; one per process."""

    def __init__(self, node: NodeHome, passphrase: bytes) -> None:
        self.node = node
        self.config = node.dir.config
        self.passphrase = passphrase
        self.conf_store = ConfStore(node.dir.globalconf_dir)
        self.conf: GlobalConf | None = None
        self.conf_error: str | None = None
        self.services = ServiceTable()
        self.verifier = SignatureVerifier()
        self.trust = TrustCache()
        self.replay = ReplayWindow(node.engine, self.config.server.replay_window)
        #: Message bodies in flight, shared by the client and node-to-node interfaces:
        #: the bytes held in memory, and the bytes of large bodies spooled to disk.
        self.budget = InFlightBudget(
            self.config.limits.in_flight_bytes,
            self.config.limits.busy_wait_seconds,
            on_idle=trim_after_burst,
        )
        self.spool_budget = InFlightBudget(
            self.config.limits.spool_bytes,
            self.config.limits.busy_wait_seconds,
            setting="spool_bytes",
            held_as="spooled to disk",
        )
        self.sink: EventSink = NullSink()
        self.decision: DecisionPoint = AllowAll()
        #: Attached at start-up (message log, policy); see :mod:`secnode.app.extensions`.
        self.extensions: list[Extension] = []
        self.signer: MessageSigner | None = None
        self.sign_cert: OwnCertificate | None = None
        self.auth_cert: OwnCertificate | None = None
        #: The node-to-node client (:mod:`secnode.proxy.peer_client`); None until our auth
        #: certificate and a global configuration are there.
        self.peer_client: PeerClient | None = None
        self.service_session: aiohttp.ClientSession | None = None
        #: One pooled session per TLS setting of https:// provider systems (made on first use).
        self._provider_sessions: dict[
            ProviderTls, tuple[aiohttp.ClientSession, ssl.SSLContext | bool]
        ] = {}
        self._retired_sessions: list[aiohttp.ClientSession] = []
        self._retired_clients: list[PeerClient] = []
        self._peer_contexts: dict[str, ssl.SSLContext] = {}
        self.started_at = time.time()
        #: This process's metrics registry (:mod:`secnode.app.metrics`).
        self.metrics = NodeMetrics()

    # ----- identity -----------------------------------------------------------------
    @property
    def member(self) -> MemberId:
        return self.node.member_id

    def count(self, name: str, value: float = 1) -> None:
        """Bump one of the named counters (:data:`secnode.app.metrics.COUNTERS`)."""
        self.metrics.count(name, value)

    # ----- loading ------------------------------------------------------------------
    def load_conf(self) -> None:
        try:
            self.conf = self.conf_store.load_last_good()
            self.conf_error = None if self.conf else "no global configuration yet"
        except GlobalConfError as exc:
            self.conf_error = str(exc)

    def load_certificates(self) -> None:
        """Load the active auth/sign certificates, their staples and the signing key."""
        self.apply_certificates(self.read_certificates())

    def read_certificates(self) -> LoadedCertificates:
        """The active certificates as the database holds them, and the signer for a new
        sign certificate (its key decrypted): slow, so the jobs run it in a thread and then
        :meth:`apply_certificates` on the event loop."""
        from cryptography.hazmat.primitives import serialization

        loaded: dict[str, OwnCertificate | None] = {}
        for usage in ("auth", "sign"):
            row = self.node.active_certificate(usage)
            if row is None:
                loaded[usage] = None
                continue
            cert = x509.load_pem_x509_certificate(row.cert_pem.encode())
            loaded[usage] = OwnCertificate(
                cert,
                cert.public_bytes(serialization.Encoding.DER),
                row.ocsp_der,
                row.ocsp_status,
                row.ocsp_this_update,
                row.ocsp_next_update,
                cert_view(row),
                own_cert_file(self.node, row),
                self.node.key_file_of(row, usage),
            )
        sign_cert, signer = loaded["sign"], self.signer
        if sign_cert is not None and (signer is None or signer.codec.cert != sign_cert.cert):
            key_file = sign_cert.key_file or self.node.dir.key_path("sign")
            key = keys.SoftwareSigner.from_file(key_file, self.passphrase)
            signer = MessageSigner(sign_cert.cert, key)  # a new sign certificate was imported
        return LoadedCertificates(loaded["auth"], sign_cert, signer)

    def apply_certificates(self, loaded: LoadedCertificates) -> None:
        """Put what :meth:`read_certificates` found in use at once: no exchange sees a sign
        certificate (and its staple) with another certificate's signer (called on the loop)."""
        self.auth_cert, self.sign_cert = loaded.auth, loaded.sign
        if loaded.signer is not None:
            self.signer = loaded.signer

    def reload_services(self) -> None:
        self.services = load_service_table(self.node)
        in_use = {e.tls for e in self.services.by_id.values()}
        for tls in [t for t in self._provider_sessions if t not in in_use]:
            # a changed setting: no new calls on the old session (a call in flight ends on
            # it; idle connections close after keepalive_timeout); closed with the node
            self._retired_sessions.append(self._provider_sessions.pop(tls)[0])

    def provider_session(
        self, tls: ProviderTls
    ) -> tuple[aiohttp.ClientSession, ssl.SSLContext | bool]:
        """The pooled session for provider systems with TLS setting ``tls``, and the
        ``ssl`` each request passes.

        Pinned: aiohttp checks the certificate's SHA-256 (the connector's ``Fingerprint``)
        right after the handshake, before the request is written; the request passes the
        context that presents the client certificate. Otherwise the connector holds the
        context and a request passes ``True`` (use it).
        """
        made = self._provider_sessions.get(tls)
        if made is None:
            ctx = provider_context(tls, self.node.path, self.passphrase)
            pinned = tls.pin is not None
            connector = aiohttp.TCPConnector(
                ssl=aiohttp.Fingerprint(bytes.fromhex(tls.pin)) if tls.pin is not None else ctx,
                limit=64,
                keepalive_timeout=60,
            )
            session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
            made = self._provider_sessions[tls] = (session, ctx if pinned else True)
        return made

    # ----- sessions -----------------------------------------------------------------
    def auth_cert_file(self) -> Path:
        own = self.auth_cert
        return own.cert_file if own and own.cert_file else self.node.path / "certs" / "auth.pem"

    def auth_key_file(self) -> Path:
        own = self.auth_cert
        return own.key_file if own and own.key_file else self.node.dir.key_path("auth")

    def sign_key_file(self) -> Path:
        own = self.sign_cert
        return own.key_file if own and own.key_file else self.node.dir.key_path("sign")

    async def open_sessions(self) -> None:
        self.service_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, limit_per_host=128, keepalive_timeout=60),
            auto_decompress=False,
        )
        await self.reopen_peer_session()

    async def reopen_peer_session(self) -> None:
        """(Re)build the pooled mutual-TLS client to other nodes (after conf/cert changes):
        new exchanges take the new client and the TLS contexts :meth:`peer_ssl` makes
        afresh (with our auth certificate as it is now); the old client is retired."""
        self._peer_contexts.clear()  # they hold our auth certificate as it was when built
        if self.auth_cert is None or self.conf is None:
            return
        old = self.peer_client
        self.peer_client = PeerClient()
        if old is not None:
            await self._retire_peer_client(old)

    async def _retire_peer_client(self, old: PeerClient) -> None:
        """Close a replaced client's idle connections now; the calls already on it finish
        on their connections, which are then closed instead of pooled.

        Closing them at once cut the exchanges in flight at an auth-certificate switch
        (one failed call); closed with the node if still running then.
        """
        await old.close()
        self._retired_clients = [c for c in self._retired_clients if c.active_count]
        if old.active_count:
            self._retired_clients.append(old)

    def peer_ssl(self, node: ConfNode) -> ssl.SSLContext:
        """A TLS context pinned to ``node``'s registered auth certificates (cached): any of
        them, since a node being renewed has two registered while it switches."""
        pins = ",".join(node.auth_cert_hashes)
        ctx = self._peer_contexts.get(pins)
        if ctx is None:
            if len(self._peer_contexts) > 256:
                self._peer_contexts.clear()
            ctx = pinned_client_context(
                self.auth_cert_file(), self.auth_key_file(), self.passphrase, node.auth_certs
            )
            self._peer_contexts[pins] = ctx
        return ctx

    async def close(self) -> None:
        for client in (self.peer_client, *self._retired_clients):
            if client is not None:
                await client.close(abort=True)
        provider = [session for session, _ in self._provider_sessions.values()]
        provider += self._retired_sessions
        for session in (self.service_session, *provider):
            if session is not None:
                await session.close()
        self.replay.close()
        await asyncio.sleep(0)
