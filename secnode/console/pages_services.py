"""Services, their access rights and the local systems allowed to call out: the same
operations as ``secnode service|acl|client`` (:mod:`secnode.services`)."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from aiohttp import web

from secnode import services
from secnode.console.actions import change, done, done_message
from secnode.console.render import html
from secnode.console.security import BASE, context, form_of, page, user_of
from secnode.home import NodeHome
from secnode.policy import admin as policy_admin

PATH = f"{BASE}/services"


def _float(text: str, what: str) -> float | None:
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise services.ServiceError(f"{what} must be a number of seconds") from None


async def services_page(request: web.Request) -> web.Response:
    node = context(request).node
    rows = await asyncio.to_thread(services.list_services, node)
    callers = await asyncio.to_thread(services.list_callers, node)
    return html(
        "services.html",
        **page(request, services=rows, callers=callers, done=done_message(request)),
    )


def _local(node_member: str, full_id: str) -> str:
    """``SUBSYSTEM/CODE[/VERSION]`` of a listed service id of this member."""
    return full_id.removeprefix(node_member + "/")


async def add_service(request: web.Request) -> web.StreamResponse:
    form, node = form_of(request), context(request).node
    new = services.NewService(
        subsystem=form.get("subsystem", "").strip(),
        service=form.get("service", "").strip(),
        url=form.get("url", "").strip(),
        kind=form.get("kind", "rest") if form.get("kind") in ("rest", "soap") else "rest",
        version=form.get("version", "").strip(),
        timeout=_float(form.get("timeout", ""), "the timeout") or 30.0,
    )
    if not new.subsystem or not new.service:
        raise services.ServiceError("give the subsystem and the service code")
    await change(
        request,
        "service.add",
        # a member's own service (its id given for the subsystem) in the id's // form
        f"{new.subsystem}/{'/' if '/' in new.subsystem else ''}{new.service}",
        services.add_service,
        node,
        new,
        detail={"url": new.url, "type": new.kind},
    )
    raise done(PATH, "added")


async def edit_page(request: web.Request) -> web.Response:
    node = context(request).node
    service = request.query.get("service", "")
    rows = await asyncio.to_thread(services.list_services, node)
    row = next((r for r in rows if _local(str(node.member_id), r["id"]) == service), None)
    if row is None:
        raise services.ServiceError(f"unknown service {service}")
    openapi = await asyncio.to_thread(_openapi_text, node, service)
    return html(
        "service_edit.html",
        **page(request, service=service, row=row, openapi=openapi, done=done_message(request)),
    )


def _openapi_text(node: NodeHome, service: str) -> str:
    with node.sessions() as s:
        return services.find_service(node, s, service).openapi or ""


async def edit_service(request: web.Request) -> web.StreamResponse:
    form, node = form_of(request), context(request).node
    service = form.get("service", "")
    url = form.get("url", "").strip() or None
    timeout = _float(form.get("timeout", ""), "the timeout")
    openapi = form.get("openapi", "")
    clear = form.get("clear_openapi") == "on"
    await change(
        request,
        "service.edit",
        service,
        services.edit_service,
        node,
        service,
        url,
        timeout,
        openapi or None,
        clear,
        detail={"url": url, "timeout": timeout, "openapi": "cleared" if clear else bool(openapi)},
    )
    raise done(f"{PATH}/edit?service={quote(service, safe='/')}", "edited")


async def classify(request: web.Request) -> web.StreamResponse:
    form, node = form_of(request), context(request).node
    service = form.get("service", "")

    def split(name: str) -> tuple[str, ...]:
        return tuple(x.strip() for x in form.get(name, "").split(",") if x.strip())

    c = policy_admin.Classification(
        non_personal=form.get("non_personal") == "on",
        fields=split("fields"),
        purposes=split("purposes"),
    )
    by = user_of(request).username
    await change(
        request,
        "service.classify",
        service,
        policy_admin.classify,
        node,
        service,
        c,
        by,
        detail={"non_personal": c.non_personal, "fields": c.fields, "purposes": c.purposes},
    )
    raise done(f"{PATH}/edit?service={quote(service, safe='/')}", "classified")


async def grant(request: web.Request) -> web.StreamResponse:
    form, node = form_of(request), context(request).node
    service, client = form.get("service", ""), form.get("client", "").strip()
    await change(
        request,
        "acl.grant",
        service,
        services.grant,
        node,
        service,
        client,
        detail={"client": client},
    )
    raise done(PATH, "granted")


async def revoke(request: web.Request) -> web.StreamResponse:
    form, node = form_of(request), context(request).node
    service, client = form.get("service", ""), form.get("client", "")
    await change(
        request,
        "acl.revoke",
        service,
        services.revoke,
        node,
        service,
        client,
        detail={"client": client},
    )
    raise done(PATH, "revoked")


async def allow_caller(request: web.Request) -> web.StreamResponse:
    form, node = form_of(request), context(request).node
    subsystem = form.get("subsystem", "").strip()
    address = form.get("address", "").strip() or None
    any_caller = form.get("any") == "on"
    await change(
        request,
        "client.allow",
        subsystem,
        services.allow_caller,
        node,
        subsystem,
        address,
        None,
        any_caller,
        detail={"address": address, "any": any_caller},
    )
    raise done(PATH, "allowed")


async def remove_caller(request: web.Request) -> web.StreamResponse:
    form, node = form_of(request), context(request).node
    subsystem, kind, value = form.get("subsystem", ""), form.get("kind", ""), form.get("value", "")
    if kind == "cert":
        raise services.ServiceError(
            "certificate rules are removed with 'secnode client remove --cert FILE'"
        )
    await change(
        request,
        "client.remove",
        subsystem,
        services.remove_caller,
        node,
        subsystem,
        value if kind == "address" else None,
        None,
        kind == "any",
        detail={"kind": kind, "value": value},
    )
    raise done(PATH, "removed")
