"""The own-certificate status rule: never sign, log or call a service under a bad staple.

Every message this node signs carries its sign certificate and the OCSP response
it holds for it; a peer refuses the message when that response is not ``good``
and fresh. Checking the same thing *before* acting keeps the failure on the
side that has it: the client node refuses before it signs and sends (instead
of the provider answering ``Client.InvalidSignature``), and the provider node
refuses before it calls the service (instead of the service acting and the
client then refusing the signed response). The judgement is
:func:`secnode.core.health.cert_usable`, the one ``/health`` makes, on the row the
runtime last loaded; the OCSP job reloads it whenever the database row moves.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from secnode.core import health
from secnode.core.errors import XRoadError
from secnode.core.globalconf import SETTINGS_DEFAULTS

if TYPE_CHECKING:
    from secnode.app.runtime import NodeRuntime, OwnCertificate


def _freshness(rt: NodeRuntime) -> float:
    settings = rt.conf.settings if rt.conf is not None else {}
    return float(
        settings.get("ocsp_freshness_seconds", SETTINGS_DEFAULTS["ocsp_freshness_seconds"])
    )


def _remedy(own: OwnCertificate) -> str:
    if own.ocsp_status == "revoked":
        return "import and activate a new sign certificate (secnode certs import)"
    return "exchange resumes when the node holds a fresh 'good' OCSP response"


def own_sign_problem(rt: NodeRuntime, now: dt.datetime | None = None) -> str | None:
    """None when the node may sign now; else why not, naming its own certificate's state."""
    own = rt.sign_cert
    if rt.signer is None or own is None or own.view is None:
        return "this node has no sign certificate (secnode certs import)"
    when = now or dt.datetime.now(dt.UTC)
    freshness = _freshness(rt)
    if own.ocsp_der and health.cert_usable(own.view, freshness, when):
        return None
    reasons = health.cert_reasons("sign", own.view, freshness, when) or [
        "no OCSP response held for the sign certificate"
    ]
    return f"this node cannot sign: {'; '.join(reasons)}; {_remedy(own)}"


def require_own_sign_status(rt: NodeRuntime, code: str, now: dt.datetime | None = None) -> None:
    """Raise ``code`` (the side's internal error) unless the node's own signature would pass."""
    problem = own_sign_problem(rt, now)
    if problem is not None:
        raise XRoadError(code, problem)
