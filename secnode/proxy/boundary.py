"""One error boundary per surface: the aiohttp middleware every app of the node runs under.

Handlers raise; only the boundary answers errors. For each surface (client
interface, node-to-node interface, admin interface) it

* maps an :class:`XRoadError` to its X-Road form (SOAP fault or REST JSON with
  ``X-Road-Error``), prefixed for the side that caught it
  (:meth:`XRoadError.at_side`: ``Client.*`` stays, others get the surface's prefix);
* maps **every other exception** to ``<side>.InternalError`` in the same form, so a
  bug never shows a caller aiohttp's ``500 Server got itself in trouble`` or a traceback;
* writes the refusal record to the message log once, with the error's ``detail`` id,
  when the message's headers are known (:func:`note_message`);
* counts every exchange, answered or refused, with its latency
  (:meth:`secnode.app.metrics.NodeMetrics.exchange`: direction, service, error code);
* logs one line per refusal; an unexpected exception's traceback is logged once per
  distinct cause (and at debug level every time), so hostile input cannot flood the log.
  Every line logged while a message is handled carries its id, client and service
  (:func:`certs.logs.bind`), a refusal's line its error code.

:func:`http_error_logger` does the same for what never reaches a handler: aiohttp's
parser refusing malformed HTTP (one warning line instead of an ERROR traceback).
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware

from certs import logs
from secnode.core import errors
from secnode.core.errors import XRoadError
from secnode.core.message import MessageHeaders
from secnode.proxy.hooks import EventSink, ExchangeEvent
from secnode.proxy.io import error_response
from secnode.proxy.spool import Payload, close_spools

#: Distinct causes of unexpected exceptions whose traceback was logged (bounded).
MAX_CAUSES = 1024


@dataclass(frozen=True)
class Seen:
    """What the flow knows about the message when it fails: enough for a refusal record."""

    headers: MessageHeaders
    body: Payload | None = None
    keep_body: bool = False


SEEN = web.RequestKey("secnode_seen", Seen)


def note_message(
    request: web.Request,
    headers: MessageHeaders,
    body: Payload | None = None,
    keep_body: bool = False,
) -> None:
    """Tell the boundary the message's headers (and body once read): a refusal after this
    point is recorded in the message log. ``keep_body``: the record keeps the body itself,
    otherwise only its SHA-256 and size."""
    request[SEEN] = Seen(headers, body, keep_body)
    logs.bind(message_id=headers.message_id, client=headers.client, service=headers.service)


class ExchangeMetrics(Protocol):
    """What the boundary counts (:class:`secnode.app.metrics.NodeMetrics`)."""

    def exchange(
        self, direction: str, service: str | None, code: str | None, seconds: float
    ) -> None: ...


class Runtime(Protocol):
    """What the boundary needs of :class:`~secnode.app.runtime.NodeRuntime`."""

    sink: EventSink

    @property
    def metrics(self) -> ExchangeMetrics: ...


@dataclass(frozen=True)
class Surface:
    """One listener's error boundary: whose prefix, how to answer, where to log."""

    side: str  # errors.SERVER_CLIENT_PROXY or errors.SERVER_SERVER_PROXY
    log: logging.Logger
    default_protocol: Callable[[web.Request], str]  # "soap" | "rest" before headers are known
    runtime: Runtime | None = None  # None: no refusal records or counters (admin)

    @property
    def direction(self) -> str:
        """``outbound`` on the client interface, ``inbound`` on the node-to-node one."""
        return "outbound" if self.side == errors.SERVER_CLIENT_PROXY else "inbound"


def error_boundary(surface: Surface) -> Middleware:
    """The middleware for ``surface`` (see the module docstring)."""
    causes: set[str] = set()

    @web.middleware
    async def boundary(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await answer(request, handler)
        finally:
            # aiohttp keeps a keep-alive connection's last request until the next one
            # arrives: it must not keep the message body alive with it.
            request.pop(SEEN, None)
            close_spools(request)  # after the refusal record, which may store the body

    async def answer(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        with logs.scope(client=None if surface.runtime is None else request.remote):
            try:
                response = await handler(request)
            except web.HTTPException:
                raise  # aiohttp's own answers (404 of the router, 405): not failures
            except XRoadError as exc:
                err = exc.at_side(surface.side)
                _log_refusal(surface.log, request, err)
            except Exception as exc:  # the boundary: nothing else may reach aiohttp
                err = errors.internal_error(surface.side)
                _log_internal(surface.log, request, err, exc, causes)
            else:  # answered (a provider node's refusal passed on carries its code)
                passed_on = response.headers.get(errors.ERROR_HEADER)
                _count(surface, request, passed_on, started)
                return response
            await _record_refusal(surface, request, err)
            _count(surface, request, err.code, started)
            seen = request.get(SEEN)
            protocol = seen.headers.protocol if seen else surface.default_protocol(request)
            return error_response(err, protocol, request.headers.get("Accept"))

    return boundary


def _count(surface: Surface, request: web.Request, code: str | None, started: float) -> None:
    rt = surface.runtime
    if rt is None:
        return
    seen = request.get(SEEN)
    service = str(seen.headers.service) if seen is not None else None
    rt.metrics.exchange(surface.direction, service, code, time.perf_counter() - started)


# ----- logging ------------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text: object, limit: int = 1000) -> str:
    """``text`` safe for a one-line log entry: control characters escaped, length capped."""
    value = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
    return value if len(value) <= limit else value[:limit] + "..."


def _what(request: web.Request) -> str:
    seen = request.get(SEEN)
    if seen is not None:
        h = seen.headers
        return f"{h.message_id} {h.client} -> {h.service}"
    return f"{request.method} {one_line(request.rel_url, 200)} from {request.remote}"


def _log_refusal(log: logging.Logger, request: web.Request, err: XRoadError) -> None:
    log.warning(
        "refused %s: %s: %s (detail %s)",
        one_line(_what(request)),
        err.code,
        one_line(err.message),
        one_line(err.detail, 200),
        extra={"error_code": err.code},
    )


def _cause(exc: BaseException) -> str:
    """Type and innermost frame: the same bug hit again is the same cause."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__qualname__}@{where}"


def _log_internal(
    log: logging.Logger, request: web.Request, err: XRoadError, exc: Exception, causes: set[str]
) -> None:
    cause = _cause(exc)
    first = cause not in causes and len(causes) < MAX_CAUSES
    if first:
        causes.add(cause)
    log.error(
        "internal error on %s: %s: %s (detail %s)%s",
        one_line(_what(request)),
        type(exc).__name__,
        one_line(exc),
        err.detail,
        "" if first else " [traceback logged before]",
        exc_info=exc if first else None,
        extra={"error_code": err.code},
    )
    if not first:
        log.debug("traceback of detail %s", err.detail, exc_info=exc)


# ----- the refusal record -------------------------------------------------------------------
def refusal_reason(err: XRoadError) -> str:
    """The record's ``reason``: code and detail id first, so a truncated message keeps them."""
    return f"{err.code} (detail {err.detail}): {err.message}"


async def _record_refusal(surface: Surface, request: web.Request, err: XRoadError) -> None:
    rt = surface.runtime
    if rt is None:
        return
    seen = request.get(SEEN)
    if seen is None:  # nothing to attribute it to: the log line above is the record
        return
    try:
        await rt.sink.record(
            ExchangeEvent.of(
                "refusal",
                seen.headers,
                seen.body,
                log_body=seen.keep_body,
                reason=refusal_reason(err),
                status=err.http_status,
            )
        )
    except Exception as exc:  # the refusal stands even if it cannot be logged
        surface.log.warning(
            "could not log the refusal (detail %s): %s: %s",
            err.detail,
            type(exc).__name__,
            one_line(exc),
        )


# ----- malformed HTTP: aiohttp's parser, before any handler ---------------------------------
class _HttpErrorLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger, except that a request its parser refused (bad request line,
    bad headers, ...: :class:`HttpProcessingError`) is one warning line with the cause,
    not an ERROR with a traceback (one per request: a log-flooding vector)."""

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self._malformed(msg, args, exc_info)
        else:
            self.logger.error(msg, *args, exc_info=exc_info, **kwargs)

    def debug(self, msg: object, *args: Any, exc_info: Any = None, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):  # aiohttp's "not HTTP at all" case
            self._malformed(msg, args, exc_info)
        else:
            self.logger.debug(msg, *args, exc_info=exc_info, **kwargs)

    def _malformed(self, msg: object, args: tuple[Any, ...], exc: HttpProcessingError) -> None:
        what = str(msg) % args if args else str(msg)
        self.logger.warning(
            "%s: malformed HTTP request refused (%d): %s: %s",
            what,
            exc.code,
            type(exc).__name__,
            one_line(" ".join(exc.message.split()), 300),
        )


def http_error_logger(name: str = "aiohttp.server") -> logging.LoggerAdapter:  # type: ignore[type-arg]
    """The ``logger`` to give ``web.AppRunner`` for a listener."""
    return _HttpErrorLog(logging.getLogger(name), {})
