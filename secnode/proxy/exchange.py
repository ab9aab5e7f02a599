"""One message's way through a node: the state its steps share, and the steps both sides use.

Each side runs an exchange as a short list of named steps, in the shape of X-Road's
``ServerMessageProcessor.process()``: the client node checks its configuration,
the caller, resolves the provider, decides, signs and logs, sends, verifies the
response and answers (:func:`secnode.proxy.client_side._exchange`); the provider
node does the mirror image (:func:`secnode.proxy.server_side._exchange`). A step
reads what the steps before it put on the :class:`Exchange` and adds its own
result; a refusal raises :class:`~secnode.core.errors.XRoadError`, which the error
boundary (:mod:`secnode.proxy.boundary`) answers and records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from secnode.core import errors
from secnode.core.errors import XRoadError
from secnode.core.identifiers import MemberId, ServiceId, SubsystemId
from secnode.core.message import MessageHeaders
from secnode.core.msgsig import MessageSigner
from secnode.core.witness import LogPosition
from secnode.proxy.hooks import ExchangeEvent, Signed, Verdict
from secnode.proxy.spool import Payload
from secnode.trust.own_status import require_own_sign_status

if TYPE_CHECKING:
    from secnode.app.runtime import NodeRuntime
    from secnode.core.globalconf import GlobalConf

#: The runtime an interface's application serves (typed, instead of ``app["runtime"]``).
RUNTIME: web.AppKey[NodeRuntime] = web.AppKey("runtime")


@dataclass
class Exchange:
    """What one message has gathered so far on its way through this node."""

    rt: NodeRuntime
    http: web.Request
    headers: MessageHeaders
    body: Payload = b""
    """The message's body: a spool as read from the peer, bytes when the node made it."""
    body_sha256: bytes = b""
    log_body: bool = True
    """Whether the message log keeps the bodies (the node's setting, or the service's own)."""
    started: float = field(default_factory=time.perf_counter)
    global_conf: GlobalConf | None = None
    """The configuration the exchange runs under, set once it was found current."""
    verdict: Verdict | None = None
    """The policy decision, set by :func:`decide`."""
    request: Signed | None = None
    """The request's signature: made here (client node) or verified here (provider node)."""
    response: Signed | None = None
    """The response's signature: verified here (client node) or made here (provider node)."""
    signer: MessageSigner | None = None
    """The signer :func:`sign` used: whatever else this exchange signs is signed by it too,
    even if a renewed sign certificate goes live meanwhile."""

    @property
    def client(self) -> MemberId | SubsystemId:
        return self.headers.client

    @property
    def service(self) -> ServiceId:
        return self.headers.service

    @property
    def conf(self) -> GlobalConf:
        """The checked configuration; a step that runs before the check is a bug."""
        assert self.global_conf is not None, "the configuration step has not run"
        return self.global_conf

    @property
    def decision(self) -> Verdict:
        assert self.verdict is not None, "the decision step has not run"
        return self.verdict

    @property
    def signed_request(self) -> Signed:
        assert self.request is not None, "the request is not signed or verified yet"
        return self.request

    async def log(
        self,
        direction: str,
        body: Payload,
        signed: Signed | None = None,
        *,
        body_sha256: bytes | None = None,
        reason: str = "",
        status: int | None = None,
        extra: dict[str, Any] | None = None,
        witness: str | None = None,
    ) -> LogPosition | None:
        """Record one step in the message log; raising refuses the message (it is not
        answered unlogged). Returns the record's position (None: the node keeps no log)."""
        return await self.rt.sink.record(
            ExchangeEvent.of(
                direction,
                self.headers,
                body,
                log_body=self.log_body,
                signed=signed,
                body_sha256=body_sha256,
                reason=reason,
                status=status,
                extra=extra,
                witness=witness,
            )
        )


def spool_dir(rt: NodeRuntime) -> Path:
    """Where this node spools large bodies while it handles them (next to its body store,
    on the same file system, so the log links a spool file instead of copying it)."""
    return rt.node.path / "spool"


# ----- steps both sides take ---------------------------------------------------------------
async def decide(ex: Exchange, side: str, http_status: int | None = None) -> None:
    """Ask the policy point; ``side`` is 'client' (early refusal) or 'provider' (the
    authoritative decision)."""
    verdict = await ex.rt.decision.decide(ex.headers, side)
    ex.rt.metrics.decision(side, verdict.allow, verdict.reason)
    if not verdict.allow:
        raise XRoadError(
            errors.ACCESS_DENIED,
            f"policy: {verdict.reason}: {verdict.message}",
            http_status=http_status,
            detail=verdict.reason,
        )
    ex.verdict = verdict


def sign(ex: Exchange, digest: bytes, code: str) -> Signed:
    """Sign ``digest`` with this node's key, after its own certificate's status was found
    usable (``code`` answers if not: :mod:`secnode.trust.own_status`)."""
    rt = ex.rt
    require_own_sign_status(rt, code)
    assert rt.signer is not None and rt.sign_cert is not None and rt.sign_cert.ocsp_der
    signer = ex.signer = rt.signer
    codec = signer.codec
    return Signed(
        digest, signer.sign(digest), codec.cert_der, codec.cert_sha256, rt.sign_cert.ocsp_der
    )
