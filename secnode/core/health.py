"""Is this node able to exchange messages right now, and if not, why? (pure)

The same judgement serves ``/health`` (for load balancers and monitoring),
``/metrics`` and ``secnode status``, so an operator never sees two answers.
A node is healthy when every check a peer makes of it would pass: it holds a
current global configuration, and an auth and a sign certificate that are
within validity with a ``good`` OCSP response that is still fresh. Anything
else is a *reason* and makes it unhealthy; conditions that will become a
reason if nobody acts (a registry or OCSP responder that cannot be reached
while the held copies are still usable, a certificate close to expiry, a node
not yet registered) are *warnings*.

One state lies between: **degraded** (HTTP 200, ``"status": "degraded"``) when the
auth certificate in use is not listed for this node in the held configuration, so
peers refuse its connections although the node itself is fine (not registered yet,
or a registry that dropped it). The node stays in a load balancer's pool (nothing
better can take its place) while monitoring sees the state; the warning says why.

Inputs are plain snapshots; no database, network or clock access here.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from secnode.core.globalconf import SETTINGS_DEFAULTS
from secnode.core.jsonfmt import format_time

USAGES = ("auth", "sign")
#: Warn this long before a certificate expires (re-keying takes a CA round trip).
CERT_EXPIRY_WARNING = dt.timedelta(days=30)


@dataclass(frozen=True)
class ConfView:
    version: int
    generated_at: dt.datetime
    expires_at: dt.datetime
    settings: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CertView:
    """One active certificate with its cached OCSP response (times in UTC)."""

    usage: str
    subject: str
    sha256: str
    not_before: dt.datetime
    not_after: dt.datetime
    ocsp_status: str | None = None
    ocsp_this_update: dt.datetime | None = None
    ocsp_next_update: dt.datetime | None = None
    ocsp_fetched_at: dt.datetime | None = None
    ocsp_error: str | None = None
    ocsp_failures: int = 0


@dataclass(frozen=True)
class ConfJob:
    """The configuration job's last outcome (see :func:`secnode.app.jobs.read_conf_state`)."""

    ok_at: str | None = None
    error: str | None = None
    failing_since: str | None = None

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ConfJob:
        return cls(state.get("ok_at"), state.get("error"), state.get("failing_since"))


@dataclass(frozen=True)
class Health:
    healthy: bool
    reasons: list[str]
    warnings: list[str]
    report: dict[str, Any]
    degraded: bool = False  # healthy, but peers refuse the auth certificate in use

    @property
    def status(self) -> str:
        if not self.healthy:
            return "unhealthy"
        return "degraded" if self.degraded else "ok"

    @property
    def http_status(self) -> int:
        return 200 if self.healthy else 503

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reasons": self.reasons,
            "warnings": self.warnings,
            **self.report,
        }


def _seconds(delta: dt.timedelta) -> int:
    """Whole seconds, rounded down: just after expiry this is already negative."""
    return math.floor(delta.total_seconds())


def ocsp_age(cert: CertView, now: dt.datetime) -> float | None:
    """Seconds since the held response's thisUpdate (None without a response)."""
    if cert.ocsp_this_update is None:
        return None
    return (now - cert.ocsp_this_update).total_seconds()


def ocsp_fresh(cert: CertView, freshness: float, now: dt.datetime) -> bool:
    age = ocsp_age(cert, now)
    if age is None or age > freshness:
        return False
    return cert.ocsp_next_update is None or now <= cert.ocsp_next_update


def cert_usable(cert: CertView, freshness: float, now: dt.datetime) -> bool:
    """Within validity with a fresh ``good`` response: the test every peer applies to it."""
    return (
        cert.ocsp_status == "good"
        and cert.not_before <= now <= cert.not_after
        and ocsp_fresh(cert, freshness, now)
    )


def cert_reasons(usage: str, cert: CertView, freshness: float, now: dt.datetime) -> list[str]:
    """Why ``cert`` is unusable now, in the words of ``/health`` (empty: usable)."""
    reasons: list[str] = []
    _cert_part(usage, cert, freshness, now, reasons, [])
    return reasons


def _conf_part(
    conf: ConfView | None,
    conf_error: str | None,
    job: ConfJob,
    now: dt.datetime,
    reasons: list[str],
    warnings: list[str],
) -> dict[str, Any]:
    unreachable = (
        (f"; the central registry cannot be reached since {job.failing_since}: {job.error}")
        if job.error
        else ""
    )
    if conf is None:
        reasons.append(
            f"no global configuration{': ' + conf_error if conf_error else ' yet'}{unreachable}"
        )
        return {
            "version": None,
            "expires_at": None,
            "expired": None,
            "seconds_to_expiry": None,
            "last_refresh_at": job.ok_at,
            "refresh_error": job.error,
        }
    expired = now > conf.expires_at
    if expired:
        reasons.append(
            f"global configuration version {conf.version} expired at "
            f"{format_time(conf.expires_at)}: message exchange stopped{unreachable}"
        )
    elif job.error:
        warnings.append(
            f"global configuration refresh failing since {job.failing_since}: "
            f"{job.error}; version {conf.version} is used until it expires at "
            f"{format_time(conf.expires_at)}"
        )
    return {
        "version": conf.version,
        "generated_at": format_time(conf.generated_at),
        "expires_at": format_time(conf.expires_at),
        "expired": expired,
        "seconds_to_expiry": _seconds(conf.expires_at - now),
        "last_refresh_at": job.ok_at,
        "refresh_error": job.error,
    }


def _cert_part(
    usage: str,
    cert: CertView | None,
    freshness: float,
    now: dt.datetime,
    reasons: list[str],
    warnings: list[str],
) -> dict[str, Any] | None:
    if cert is None:
        reasons.append(f"no {usage} certificate imported (secnode certs import)")
        return None
    if now > cert.not_after:
        reasons.append(f"{usage} certificate expired at {format_time(cert.not_after)}")
    elif now < cert.not_before:
        reasons.append(f"{usage} certificate is not valid before {format_time(cert.not_before)}")
    elif cert.not_after - now < CERT_EXPIRY_WARNING:
        warnings.append(f"{usage} certificate expires at {format_time(cert.not_after)}")
    age = ocsp_age(cert, now)
    fresh = ocsp_fresh(cert, freshness, now)
    responder = f" (OCSP responder: {cert.ocsp_error})" if cert.ocsp_error else ""
    if cert.ocsp_status is None:
        reasons.append(f"no OCSP response for the {usage} certificate{responder}")
    elif cert.ocsp_status == "revoked":
        reasons.append(f"{usage} certificate is revoked according to OCSP")
    elif cert.ocsp_status != "good":
        reasons.append(f"OCSP status of the {usage} certificate is {cert.ocsp_status}")
    elif not fresh:
        assert cert.ocsp_this_update is not None
        reasons.append(
            f"OCSP response for the {usage} certificate is stale (thisUpdate "
            f"{format_time(cert.ocsp_this_update)}, {age:.0f} s old, freshness "
            f"{freshness:g} s){responder}"
        )
    elif cert.ocsp_error:
        warnings.append(f"OCSP refresh for the {usage} certificate failing: {cert.ocsp_error}")
    return {
        "subject": cert.subject,
        "sha256": cert.sha256,
        "not_before": format_time(cert.not_before),
        "not_after": format_time(cert.not_after),
        "ocsp": {
            "status": cert.ocsp_status,
            "fresh": fresh,
            "age_seconds": None if age is None else round(age, 1),
            "this_update": format_time(cert.ocsp_this_update) if cert.ocsp_this_update else None,
            "next_update": format_time(cert.ocsp_next_update) if cert.ocsp_next_update else None,
            "fetched_at": format_time(cert.ocsp_fetched_at) if cert.ocsp_fetched_at else None,
            "error": cert.ocsp_error,
            "failures": cert.ocsp_failures,
        },
    }


def assess(
    node_id: str,
    conf: ConfView | None,
    certs: Mapping[str, CertView | None],
    now: dt.datetime,
    *,
    conf_error: str | None = None,
    conf_job: ConfJob | None = None,
    registered: bool | None = None,
    pending_auth: dict[str, Any] | None = None,
) -> Health:
    """Judge the node from snapshots; ``registered`` None means 'not known yet'.

    ``registered``: the configuration lists the auth certificate in use for this node.
    ``pending_auth``: a renewed auth certificate waiting to be put in use
    (:meth:`secnode.trust.renewal.PendingView.to_json`).
    """
    reasons: list[str] = []
    warnings: list[str] = []
    settings = conf.settings if conf is not None else {}
    freshness = float(
        settings.get("ocsp_freshness_seconds", SETTINGS_DEFAULTS["ocsp_freshness_seconds"])
    )
    conf_part = _conf_part(conf, conf_error, conf_job or ConfJob(), now, reasons, warnings)
    cert_parts = {u: _cert_part(u, certs.get(u), freshness, now, reasons, warnings) for u in USAGES}
    if registered is False:
        warnings.append(
            "this node's auth certificate is not registered in the global "
            "configuration yet (secnode register, then the operator approves): "
            "peers refuse its connections"
        )
    if pending_auth is not None:
        warnings.append(_pending_warning(pending_auth))
    report = {
        "node": node_id,
        "registered": registered,
        "checked_at": format_time(now),
        "conf": conf_part,
        "certificates": cert_parts,
        "pending_auth_certificate": pending_auth,
        "ocsp_freshness_seconds": freshness,
    }
    return Health(not reasons, reasons, warnings, report, degraded=registered is False)


def _pending_warning(pending: dict[str, Any]) -> str:
    """A renewal in progress: the old certificate is in use, the new one waits (no outage)."""
    sha = str(pending.get("sha256", ""))[:16]
    if pending.get("listed"):
        return (
            f"auth certificate renewal: new certificate {sha}... is registered; it is put "
            f"in use at {pending.get('switch_at')}, when every peer's configuration lists it"
        )
    return (
        f"auth certificate renewal: new certificate {sha}... awaits registration (secnode "
        "register, then the operator approves); the current one stays in use"
    )
