"""X-Road's environmental monitoring answer (``getSecurityServerMetrics``, PR-ENVMONMES).

Monitoring systems written for X-Road ask a security server for its metrics with one
SOAP request addressed to the server's owner member; the answer is a tree of named
metrics (``metricSet`` / ``numericMetric`` / ``stringMetric``, X-Road's
``monitoring.xsd``, bundled in ``xroad_xsd/``). This module turns what the node knows
about itself (:class:`NodeState`) into that tree and renders it, and reads the
request's ``outputSpec`` (which metrics are wanted). Who may ask is decided by
:func:`may_query`. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from lxml import etree

from secnode.core import errors
from secnode.core.errors import XRoadError
from secnode.core.identifiers import ClientId, MemberId
from secnode.core.jsonfmt import format_time
from secnode.core.soap_names import SOAP_ENV_NS
from secnode.core.xmlsafe import Element

MONITORING_NS: Final = "http://x-road.eu/xsd/monitoring"
SERVICE_CODE: Final = "getSecurityServerMetrics"
#: The global group whose members may query every node's metrics (docs/operations.md,
#: "Monitoring"): X-Road's ``monitoringClient`` of the global configuration, as a group
#: the registry already signs and publishes. Without it only the node's owner may ask.
MONITORING_GROUP: Final = "security-server-monitoring"

_M = f"{{{MONITORING_NS}}}"


@dataclass(frozen=True)
class CertState:
    """One of the node's active certificates and the OCSP status it holds for it."""

    usage: str
    subject: str
    serial: int
    not_after: dt.datetime
    ocsp_status: str | None
    ocsp_next_update: dt.datetime | None


@dataclass(frozen=True)
class NodeState:
    """What the node reports about itself, gathered by the running node."""

    server: str
    version: str
    uptime_seconds: float
    certificates: list[CertState]
    last_timestamp: dt.datetime | None
    unstamped: int | None
    disk_free_bytes: int
    disk_total_bytes: int
    rss_bytes: int | None
    load_average: tuple[float, float, float] | None


Metric = tuple[str, str, Any]
"""(kind, name, value): kind ``string``, ``numeric`` or ``set`` (value: list of metrics)."""


@dataclass
class MetricSet:
    name: str
    items: list[Metric] = field(default_factory=list)

    def string(self, name: str, value: str) -> None:
        self.items.append(("string", name, value))

    def number(self, name: str, value: float | int) -> None:
        self.items.append(("numeric", name, value))

    def subset(self, name: str) -> MetricSet:
        sub = MetricSet(name)
        self.items.append(("set", name, sub))
        return sub


def may_query(client: ClientId, owner: MemberId, monitoring_clients: tuple[ClientId, ...]) -> bool:
    """X-Road's rule: the node's owner member, or the federation's monitoring client(s)
    (the members of :data:`MONITORING_GROUP`); nobody else (deny by default)."""
    return client == owner or client in monitoring_clients


def _time(value: dt.datetime | None) -> str:
    return "" if value is None else format_time(value)


def metric_set(state: NodeState) -> MetricSet:
    """The whole tree: X-Road's ``proxyVersion`` first, then secnode's sets."""
    root = MetricSet(f"SERVER:{state.server}")
    root.string("proxyVersion", state.version)
    system = root.subset("systemMetrics")
    system.number("Uptime", round(state.uptime_seconds, 3))
    system.number("DiskSpaceFree", state.disk_free_bytes)
    system.number("DiskSpaceTotal", state.disk_total_bytes)
    if state.rss_bytes is not None:
        system.number("ResidentSetSize", state.rss_bytes)
    if state.load_average is not None:
        for label, value in zip(("1", "5", "15"), state.load_average, strict=True):
            system.number(f"SystemLoadAverage{label}", round(value, 3))
    certs = root.subset("Certificates")
    for cert in state.certificates:
        one = certs.subset(f"{cert.usage}Certificate")
        one.string("Subject", cert.subject)
        one.string("SerialNumber", format(cert.serial, "X"))
        one.string("NotAfter", _time(cert.not_after))
        one.string("OcspStatus", cert.ocsp_status or "unknown")
        one.string("OcspNextUpdate", _time(cert.ocsp_next_update))
    stamping = root.subset("Timestamping")
    stamping.string("LastTimestamp", _time(state.last_timestamp))
    if state.unstamped is not None:
        stamping.number("UnstampedRecords", state.unstamped)
    return root


def select(root: MetricSet, wanted: list[str]) -> MetricSet:
    """Only the named metrics (and sets), as X-Road's ``outputSpec`` asks; all if none named.
    ``proxyVersion`` is always answered, as X-Road does."""
    if not wanted:
        return root

    def keep(items: list[Metric]) -> list[Metric]:
        out: list[Metric] = []
        for kind, name, value in items:
            if name in wanted or name == "proxyVersion":
                out.append((kind, name, value))
            elif kind == "set":
                inner = keep(value.items)
                if inner:
                    out.append((kind, name, MetricSet(name, inner)))
        return out

    return MetricSet(root.name, keep(root.items))


def _render(parent: Any, metrics: MetricSet) -> None:
    elem = etree.SubElement(parent, _M + "metricSet")
    etree.SubElement(elem, _M + "name").text = metrics.name
    for kind, name, value in metrics.items:
        if kind == "set":
            _render(elem, value)
            continue
        child = etree.SubElement(
            elem, _M + ("stringMetric" if kind == "string" else "numericMetric")
        )
        etree.SubElement(child, _M + "name").text = name
        text = value if kind == "string" else str(Decimal(str(value)))
        etree.SubElement(child, _M + "value").text = text


def response_body(metrics: MetricSet) -> Any:
    """``m:getSecurityServerMetricsResponse`` (an lxml element) for a SOAP Body."""
    out = etree.Element(_M + "getSecurityServerMetricsResponse", nsmap={"m": MONITORING_NS})
    _render(out, metrics)  # never empty: proxyVersion is always there (the schema wants one)
    return out


def requested_fields(envelope: Element) -> list[str]:
    """The ``outputField`` names of a ``getSecurityServerMetrics`` request body (none: all).

    X-Road's own example sends the element empty; its schema has ``outputSpec``. Both are
    accepted; any other body is refused."""
    body = envelope.find(f"{{{SOAP_ENV_NS}}}Body")
    request = None if body is None else next((c for c in body if isinstance(c.tag, str)), None)
    if request is None or request.tag != _M + SERVICE_CODE:
        raise XRoadError(
            errors.INVALID_BODY,
            f"the body must be {{{MONITORING_NS}}}{SERVICE_CODE} (X-Road's monitoring.xsd)",
        )
    names = [
        (f.text or "").strip() for f in request.iter(_M + "outputField") if (f.text or "").strip()
    ]
    return names
