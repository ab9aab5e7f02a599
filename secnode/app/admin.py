"""The admin interface of ``secnode serve``: ``/health`` (JSON) and ``/metrics`` (Prometheus).

Bound to 127.0.0.1 by default (``[admin]``): it tells an attacker which
certificates are stale, so it is for the operator's monitoring, not the world.
Both endpoints read the certificate rows from the database (in a thread), so
they report what every node process sharing the database sees, and judge with
:func:`secnode.core.health.assess`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web
from cryptography import x509

from secnode.app.jobs import read_conf_state
from secnode.core import errors, health
from secnode.core.globalconf import GlobalConf
from secnode.home import NodeHome
from secnode.proxy.boundary import Surface, error_boundary
from secnode.store import models
from secnode.trust.ocsp_staples import active_rows

if TYPE_CHECKING:
    from secnode.app.runtime import NodeRuntime

log = logging.getLogger("secnode.app.admin")
RUNTIME = web.AppKey("runtime", object)
CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def cert_view(row: models.NodeCertificate) -> health.CertView:
    cert = x509.load_pem_x509_certificate(row.cert_pem.encode("ascii"))
    return health.CertView(
        usage=row.usage,
        subject=row.subject,
        sha256=row.cert_sha256,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        ocsp_status=row.ocsp_status,
        ocsp_this_update=_utc(row.ocsp_this_update),
        ocsp_next_update=_utc(row.ocsp_next_update),
        ocsp_fetched_at=_utc(row.ocsp_fetched_at),
        ocsp_error=row.ocsp_error,
        ocsp_failures=row.ocsp_failures or 0,
    )


def conf_view(conf: GlobalConf | None) -> health.ConfView | None:
    if conf is None:
        return None
    return health.ConfView(conf.version, conf.generated_at, conf.expires_at, dict(conf.settings))


def is_registered(node: NodeHome, conf: GlobalConf | None, auth_sha256: str | None) -> bool | None:
    """Registered = the configuration lists our active auth certificate for this node (the
    newest, or a previous one still registered during a renewal)."""
    from secnode.trust.renewal import listed

    return listed(conf, node, auth_sha256)


def node_health(
    node: NodeHome,
    conf: GlobalConf | None,
    conf_error: str | None = None,
    now: dt.datetime | None = None,
) -> health.Health:
    """Snapshot the node (blocking database reads) and judge it."""
    rows = {r.usage: r for r in active_rows(node)}
    certs = {u: cert_view(rows[u]) if u in rows else None for u in health.USAGES}
    auth = rows.get("auth")
    return health.assess(
        str(node.node_id),
        conf_view(conf),
        certs,
        now or dt.datetime.now(dt.UTC),
        conf_error=conf_error,
        conf_job=health.ConfJob.from_state(read_conf_state(node)),
        registered=is_registered(node, conf, auth.cert_sha256 if auth else None),
        pending_auth=_pending_auth(node, conf),
    )


def _pending_auth(node: NodeHome, conf: GlobalConf | None) -> dict[str, Any] | None:
    from secnode.trust.renewal import pending_view

    view = pending_view(node, conf)
    return None if view is None else view.to_json()


# ----- Prometheus text ----------------------------------------------------------------------
def _metric_name(name: str) -> str:
    return "secnode_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)


def prometheus_text(
    result: health.Health, counters: dict[str, float], started_at: float, now: float
) -> str:
    """Exposition format 0.0.4: gauges from the health report, the runtime's counters."""
    lines: list[str] = []

    def metric(
        name: str, kind: str, help_text: str, samples: list[tuple[str, float | None]]
    ) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if value is not None:
                lines.append(f"{name}{labels} {float(value)!r}")

    report = result.report
    conf = report["conf"]
    certs = report["certificates"]
    metric(
        "secnode_healthy",
        "gauge",
        "1 when /health answers 200 (ok or degraded).",
        [("", 1.0 if result.healthy else 0.0)],
    )
    metric(
        "secnode_degraded",
        "gauge",
        "1 when peers refuse the auth certificate in use (not in the configuration).",
        [("", 1.0 if result.degraded else 0.0)],
    )
    metric(
        "secnode_conf_version",
        "gauge",
        "Version of the held global configuration.",
        [("", conf["version"])],
    )
    metric(
        "secnode_conf_expires_in_seconds",
        "gauge",
        "Seconds until the held global configuration expires (negative: expired).",
        [("", conf["seconds_to_expiry"])],
    )
    usages = [(f'{{usage="{u}"}}', c) for u, c in certs.items() if c is not None]
    metric(
        "secnode_ocsp_age_seconds",
        "gauge",
        "Age of the held OCSP response (now - thisUpdate) per certificate usage.",
        [(lbl, c["ocsp"]["age_seconds"]) for lbl, c in usages],
    )
    metric(
        "secnode_ocsp_good",
        "gauge",
        "1 when the held OCSP response says good and is fresh.",
        [
            (lbl, 1.0 if c["ocsp"]["status"] == "good" and c["ocsp"]["fresh"] else 0.0)
            for lbl, c in usages
        ],
    )
    metric(
        "secnode_ocsp_fetch_failures",
        "gauge",
        "Consecutive failed OCSP fetches.",
        [(lbl, float(c["ocsp"]["failures"])) for lbl, c in usages],
    )
    for name in sorted(counters):
        metric(_metric_name(name), "counter", f"Runtime counter {name}.", [("", counters[name])])
    metric(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process (Unix time).",
        [("", started_at)],
    )
    metric(
        "secnode_uptime_seconds",
        "gauge",
        "Seconds since the node process started.",
        [("", round(now - started_at, 3))],
    )
    return "\n".join(lines) + "\n"


# ----- handlers -----------------------------------------------------------------------------
async def _health_of(rt: NodeRuntime) -> health.Health:
    return await asyncio.to_thread(node_health, rt.node, rt.conf, rt.conf_error)


def _with_extensions(
    rt: NodeRuntime, body: dict[str, Any], status: int
) -> tuple[dict[str, Any], int]:
    """Each extension's section (:class:`secnode.app.extensions.Extension`); a section's
    ``reasons`` make the node unhealthy and its ``warnings`` are listed with the node's own."""
    for ext in rt.extensions:
        name = ext.name
        try:
            section = dict(ext.health())
        except Exception as exc:  # a broken extension must not take /health down with it
            section = {"error": repr(exc), "warnings": [f"{name}: health section failed: {exc}"]}
        reasons, warnings = section.pop("reasons", []), section.pop("warnings", [])
        body[name] = section
        body["reasons"] = [*body.get("reasons", []), *reasons]
        body["warnings"] = [*body.get("warnings", []), *warnings]
        if reasons:
            body["status"], status = "unhealthy", 503
    return body, status


async def health_report(rt: NodeRuntime) -> dict[str, Any]:
    """What ``/health`` answers, as a dict (the console's dashboard shows it)."""
    result = await _health_of(rt)
    return _with_extensions(rt, result.to_json(), result.http_status)[0]


async def get_health(request: web.Request) -> web.Response:
    rt: NodeRuntime = request.app[RUNTIME]  # type: ignore[assignment]
    result = await _health_of(rt)
    body, status = _with_extensions(rt, result.to_json(), result.http_status)
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


async def get_metrics(request: web.Request) -> web.Response:
    rt: NodeRuntime = request.app[RUNTIME]  # type: ignore[assignment]
    result = await _health_of(rt)
    text = prometheus_text(result, dict(rt.metrics), rt.started_at, time.time())
    text += "".join(ext.metrics_text() for ext in rt.extensions)
    return web.Response(body=text.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE_METRICS})


def build_admin_app(rt: NodeRuntime) -> web.Application:
    # Errors answer as this node's own side (there is no X-Road code for an admin port);
    # they are not message refusals: no refusal records, no refused_total.
    surface = Surface(errors.SERVER_CLIENT_PROXY, log, lambda _request: "rest")
    app = web.Application(middlewares=[error_boundary(surface)])
    app[RUNTIME] = rt
    app.router.add_get("/health", get_health)
    app.router.add_get("/metrics", get_metrics)
    return app
