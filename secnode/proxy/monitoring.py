"""``getSecurityServerMetrics`` answered by the provider node (X-Road's environmental
monitoring): who may ask, which node is asked, and what the node reports about itself.

The request travels like any other (signed by the client's node, logged on both sides);
this node answers it itself when it is addressed to its owner member (a member-level
service) and names this node in ``securityServer``. Only the owner member and the members
of the registry's :data:`~secnode.core.envmonitor.MONITORING_GROUP` may ask (deny by
default); a refusal is an ``AccessDenied`` fault, logged by the error boundary.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import shutil
import time
from typing import TYPE_CHECKING, Any

from lxml import etree

from certs.names import display_name
from secnode.core import envmonitor, errors
from secnode.core.errors import XRoadError
from secnode.core.identifiers import ClientId
from secnode.core.message import MessageHeaders
from secnode.core.soap import SoapRequest
from secnode.core.soap_names import ID_NS, SOAP_ENV_NS, XROAD_NS
from secnode.core.soap_response import prepare_soap_response
from secnode.core.xmlsafe import parse_xml

if TYPE_CHECKING:
    from secnode.app.runtime import NodeRuntime
    from secnode.core.globalconf import GlobalConf

SOAP_CTYPE = "text/xml; charset=utf-8"


def monitoring_clients(conf: GlobalConf) -> tuple[ClientId, ...]:
    group = conf.group(envmonitor.MONITORING_GROUP)
    return () if group is None else tuple(group.members)


def check_request(rt: NodeRuntime, conf: GlobalConf, soap_request: SoapRequest | None) -> None:
    """Refuse unless the caller may read this node's metrics and the request names this node."""
    if soap_request is None:
        raise XRoadError(
            errors.UNKNOWN_SERVICE, f"{envmonitor.SERVICE_CODE} is a SOAP service (X-Road's)"
        )
    client = soap_request.client
    if not envmonitor.may_query(client, rt.member, monitoring_clients(conf)):
        raise XRoadError(
            errors.ACCESS_DENIED,
            f"{client} may not read the metrics of this node: only its owner {rt.member} and "
            f"the members of the global group {envmonitor.MONITORING_GROUP!r} may",
        )
    target = soap_request.security_server
    if target is None:
        raise XRoadError(
            errors.MISSING_HEADER_FIELD,
            f"{envmonitor.SERVICE_CODE} needs the securityServer header naming the node",
        )
    if target != rt.node.node_id:
        raise XRoadError(
            errors.INVALID_SECURITY_SERVER,
            f"securityServer {target} is not this node ({rt.node.node_id})",
        )


def _version() -> str:
    try:
        return importlib.metadata.version("secnode")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _rss_bytes() -> int | None:
    """Resident set size of this process (Linux ``/proc``; None elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _stamping(rt: NodeRuntime) -> tuple[Any, int | None]:
    """(last time-stamp, records waiting for one) from the message log's health section."""
    for ext in rt.extensions:
        if ext.name == "messagelog":
            stamping = dict(ext.health()).get("stamping") or {}
            last = stamping.get("last_success")
            return (dt.datetime.fromisoformat(last) if last else None), stamping.get("backlog")
    return None, None


def node_state(rt: NodeRuntime) -> envmonitor.NodeState:
    """What this node reports: all read from memory, ``/proc`` and the file system."""
    certs = []
    for usage in ("auth", "sign"):
        own = getattr(rt, f"{usage}_cert")
        if own is None:
            continue
        certs.append(
            envmonitor.CertState(
                usage,
                display_name(own.cert.subject),
                own.cert.serial_number,
                own.cert.not_valid_after_utc,
                own.ocsp_status,
                own.ocsp_next_update,
            )
        )
    disk = shutil.disk_usage(rt.node.path)
    last, unstamped = _stamping(rt)
    try:
        load: tuple[float, float, float] | None = os.getloadavg()
    except OSError:
        load = None
    return envmonitor.NodeState(
        server=str(rt.node.node_id),
        version=_version(),
        uptime_seconds=time.time() - rt.started_at,
        certificates=certs,
        last_timestamp=last,
        unstamped=unstamped,
        disk_free_bytes=disk.free,
        disk_total_bytes=disk.total,
        rss_bytes=_rss_bytes(),
        load_average=load,
    )


def answer(
    rt: NodeRuntime, headers: MessageHeaders, request_body: bytes, soap_request: SoapRequest
) -> tuple[int, str, bytes]:
    """The SOAP response: the request's header echoed (with ``requestHash``), the metrics."""
    request = parse_xml(request_body)
    wanted = envmonitor.requested_fields(request)
    metrics = envmonitor.select(envmonitor.metric_set(node_state(rt)), wanted)
    envelope = etree.Element(
        f"{{{SOAP_ENV_NS}}}Envelope",
        nsmap={"SOAP-ENV": SOAP_ENV_NS, "xrd": XROAD_NS, "id": ID_NS},
    )
    header = request.find(f"{{{SOAP_ENV_NS}}}Header")
    if header is not None:
        envelope.append(header)
    body = etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Body")
    body.append(envmonitor.response_body(metrics))
    out = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    return 200, SOAP_CTYPE, prepare_soap_response(out, soap_request, request_body)
