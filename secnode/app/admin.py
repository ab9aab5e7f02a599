"""The admin interface of ``secnode serve``: ``/health`` (JSON) and ``/metrics`` (Prometheus,
:mod:`secnode.app.metrics`).

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
from typing import TYPE_CHECKING, Any

from aiohttp import web
from cryptography import x509

from certs.metrics import metrics_handler
from certs.names import display_name
from secnode.app.jobs import read_conf_state
from secnode.app.metrics import NodeCollector
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


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def cert_view(row: models.NodeCertificate) -> health.CertView:
    cert = x509.load_pem_x509_certificate(row.cert_pem.encode("ascii"))
    return health.CertView(
        usage=row.usage,
        subject=display_name(cert.subject),  # not the stored text: older rows say 2.5.4.5=
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
    return node_snapshot(node, conf, conf_error, now)[0]


def node_snapshot(
    node: NodeHome,
    conf: GlobalConf | None,
    conf_error: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[health.Health, dict[str, health.CertView]]:
    """The judgement and the active certificates it was made from (for ``/metrics``)."""
    rows = {r.usage: r for r in active_rows(node)}
    views = {u: cert_view(r) for u, r in rows.items()}
    auth = rows.get("auth")
    result = health.assess(
        str(node.node_id),
        conf_view(conf),
        {u: views.get(u) for u in health.USAGES},
        now or dt.datetime.now(dt.UTC),
        conf_error=conf_error,
        conf_job=health.ConfJob.from_state(read_conf_state(node)),
        registered=is_registered(node, conf, auth.cert_sha256 if auth else None),
        pending_auth=_pending_auth(node, conf),
    )
    return result, views


def _pending_auth(node: NodeHome, conf: GlobalConf | None) -> dict[str, Any] | None:
    from secnode.trust.renewal import pending_view

    view = pending_view(node, conf)
    return None if view is None else view.to_json()


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


def node_collector(rt: NodeRuntime) -> NodeCollector:
    """The scrape-time gauges of ``rt`` (health, configuration, certificates, extensions)."""
    return NodeCollector(
        lambda: node_snapshot(rt.node, rt.conf, rt.conf_error),
        lambda: conf_view(rt.conf),
        lambda: list(rt.extensions),
    )


def build_admin_app(rt: NodeRuntime) -> web.Application:
    # Errors answer as this node's own side (there is no X-Road code for an admin port);
    # they are not message refusals: no refusal records, no refused_total.
    surface = Surface(errors.SERVER_CLIENT_PROXY, log, lambda _request: "rest")
    app = web.Application(middlewares=[error_boundary(surface)])
    app[RUNTIME] = rt
    app.router.add_get("/health", get_health)
    app.router.add_get("/metrics", metrics_handler(rt.metrics.exposition(node_collector(rt))))
    return app
