"""The error boundary middleware on a real aiohttp server (127.0.0.1), with handlers that fail.

No bug in the node is left to trigger an unexpected exception on purpose, so
these handlers raise one themselves: what is under test is the middleware's
answer (X-Road form, the catching side's prefix, nothing internal leaked), its
refusal record (once, with the detail id) and its logging (one line; a traceback
once per distinct cause).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree

from certs.logs import JsonFormatter
from secnode.app.metrics import NodeMetrics
from secnode.core import errors
from secnode.core.errors import XRoadError
from secnode.core.identifiers import ServiceId, SubsystemId
from secnode.core.message import MessageHeaders
from secnode.proxy.boundary import Surface, error_boundary, note_message
from secnode.proxy.hooks import ExchangeEvent

SECRET = "secret-internal-state-42"


class Recorder:
    """The runtime's two duties the boundary uses: a sink and the node's real metrics."""

    def __init__(self) -> None:
        self.events: list[ExchangeEvent] = []
        self.sink = self
        self.metrics = NodeMetrics()

    async def record(self, event: ExchangeEvent) -> None:
        self.events.append(event)

    def refused(self) -> dict[tuple[str, str, str], float]:
        """(service, result, code) -> count of the exchanges the boundary counted."""
        out: dict[tuple[str, str, str], float] = {}
        for family in self.metrics.registry.collect():
            for sample in family.samples:
                if sample.name == "secnode_requests_total":
                    key = (sample.labels["service"], sample.labels["result"], sample.labels["code"])
                    out[key] = sample.value
        return out


def headers(protocol: str = "rest") -> MessageHeaders:
    return MessageHeaders(
        protocol=protocol,
        client=SubsystemId.parse("JP/GOV/372013/portal"),
        service=ServiceId.parse("JP/GOV/072028/residents/echo"),
        message_id=str(uuid.uuid4()),
        rest_method="GET",
        rest_path="/x",
    )


async def crash(request: web.Request) -> web.Response:
    note_message(request, headers(), b"body", True)
    raise RuntimeError(SECRET)


async def crash_early(request: web.Request) -> web.Response:
    raise KeyError(SECRET)  # before the message is known: no record possible


async def deny(request: web.Request) -> web.Response:
    note_message(request, headers())
    raise XRoadError(errors.ACCESS_DENIED, "no access right")


async def bad(request: web.Request) -> web.Response:
    note_message(request, headers())
    raise XRoadError(errors.BAD_REQUEST, "malformed")


def app_for(side: str, rt: Recorder | None) -> web.Application:
    surface = Surface(
        side,
        logging.getLogger("test.boundary"),
        lambda r: "soap" if r.path == "/soap" else "rest",
        rt,
    )
    app = web.Application(middlewares=[error_boundary(surface)])
    for path, handler in (
        ("/crash", crash),
        ("/soap", crash_early),
        ("/early", crash_early),
        ("/deny", deny),
        ("/bad", bad),
    ):
        app.router.add_route("*", path, handler)
    return app


Call = Callable[[str], Awaitable[tuple[int, dict[str, str], bytes]]]


def serve(side: str, rt: Recorder | None, scenario: Callable[[Call], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        async with TestClient(TestServer(app_for(side, rt), host="127.0.0.1")) as client:

            async def call(path: str) -> tuple[int, dict[str, str], bytes]:
                resp = await client.post(path)
                return resp.status, dict(resp.headers), await resp.read()

            return await scenario(call)

    return asyncio.run(run())


SIDES = [errors.SERVER_CLIENT_PROXY, errors.SERVER_SERVER_PROXY]


@pytest.mark.parametrize("side", SIDES)
def test_unexpected_exception_is_an_internal_error_in_xroad_form(side: str) -> None:
    rt = Recorder()
    (status, hdrs, body), (s_status, s_hdrs, s_body) = serve(
        side, rt, lambda call: asyncio.gather(call("/crash"), call("/soap"))
    )
    assert status == 500 and hdrs["X-Road-Error"] == f"{side}.InternalError"
    error = json.loads(body)
    assert error["type"] == f"{side}.InternalError" and len(error["detail"]) == 36
    assert SECRET.encode() not in body and b"Traceback" not in body
    # SOAP clients get a fault (HTTP 200, as X-Road), same code
    fault = etree.fromstring(s_body).find(
        "{http://schemas.xmlsoap.org/soap/envelope/}Body/"
        "{http://schemas.xmlsoap.org/soap/envelope/}Fault"
    )
    assert s_status == 200 and fault.findtext("faultcode") == f"{side}.InternalError"
    assert s_hdrs["X-Road-Error"] == f"{side}.InternalError"
    assert SECRET.encode() not in s_body
    # one refusal record (for the message that was known), with the detail id
    assert [e.direction for e in rt.events] == ["refusal"]
    assert error["detail"] in rt.events[0].reason and rt.events[0].body == b"body"
    # both counted; the service of a never-answered exchange is not a label of its own
    assert rt.refused() == {
        ("other", "error", f"{side}.InternalError"): 1,
        ("-", "error", f"{side}.InternalError"): 1,
    }


@pytest.mark.parametrize("side", SIDES)
def test_xroad_errors_take_the_catching_sides_prefix_client_errors_keep_theirs(side: str) -> None:
    rt = Recorder()
    (d_status, d_hdrs, d_body), (b_status, b_hdrs, _) = serve(
        side, rt, lambda call: asyncio.gather(call("/deny"), call("/bad"))
    )
    assert d_status == 500 and d_hdrs["X-Road-Error"] == f"{side}.AccessDenied"
    assert json.loads(d_body)["message"] == "no access right"
    assert b_status == 400 and b_hdrs["X-Road-Error"] == "Client.BadRequest"
    assert len(rt.events) == 2
    assert rt.refused() == {
        ("other", "refused", f"{side}.AccessDenied"): 1,
        ("other", "refused", "Client.BadRequest"): 1,
    }
    detail = json.loads(d_body)["detail"]
    assert any(
        detail in e.reason and e.reason.startswith(f"{side}.AccessDenied") for e in rt.events
    )


def test_traceback_once_per_distinct_cause_one_line_otherwise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "test.boundary")

    async def scenario(call: Call) -> None:
        for _ in range(5):
            await call("/crash")
        await call("/early")

    serve(errors.SERVER_CLIENT_PROXY, Recorder(), scenario)
    errors_logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors_logged) == 6
    with_traceback = [r for r in errors_logged if r.exc_info]
    assert len(with_traceback) == 2  # RuntimeError in crash(), KeyError in crash_early()
    for record in errors_logged:
        assert "\n" not in record.getMessage()


def test_admin_surface_answers_without_records() -> None:
    status, hdrs, body = serve(errors.SERVER_CLIENT_PROXY, None, lambda call: call("/early"))
    assert status == 500 and hdrs["X-Road-Error"] == "Server.ClientProxy.InternalError"
    assert SECRET.encode() not in body


def test_routing_answers_pass_through() -> None:
    status, _, _ = serve(errors.SERVER_CLIENT_PROXY, Recorder(), lambda call: call("/nowhere"))
    assert status == 404


# ----- log context: one request's fields never reach the next one's lines -------------------------
async def noted(request: web.Request) -> web.Response:
    note_message(request, headers())
    logging.getLogger("test.boundary").info("noted")
    return web.Response(text="ok")


async def plain(request: web.Request) -> web.Response:
    logging.getLogger("test.boundary").info("plain")
    return web.Response(text="ok")


def test_log_fields_are_per_request_on_a_keep_alive_connection() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)  # formats at emit time, in the request's context
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.boundary")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    app = app_for(errors.SERVER_SERVER_PROXY, Recorder())
    app.router.add_route("*", "/noted", noted)
    app.router.add_route("*", "/plain", plain)

    async def run() -> None:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            for path in ("/noted", "/plain", "/deny"):
                async with client.post(path) as resp:  # one pooled connection, reused
                    await resp.read()

    try:
        asyncio.run(run())
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    by_message = {line["message"].split()[0]: line for line in lines}
    assert by_message["noted"]["service"] == "JP/GOV/072028/residents/echo"
    assert (
        by_message["noted"]["client"] == "JP/GOV/372013/portal"
        and by_message["noted"]["message_id"]
    )
    assert "message_id" not in by_message["plain"] and "service" not in by_message["plain"]
    assert by_message["plain"]["client"] == "127.0.0.1"  # the peer, before headers are known
    refused = by_message["refused"]
    assert refused["error_code"] == f"{errors.SERVER_SERVER_PROXY}.AccessDenied"
    assert refused["message_id"] != by_message["noted"]["message_id"]
