"""Prometheus plumbing shared by the daemons (``prometheus_client``, never hand-written text).

Each application owns a :class:`~prometheus_client.CollectorRegistry` (never the library's
global one), so several applications in one process (tests, the demo) keep their own
numbers. Gauges that describe state (a certificate's remaining lifetime, an OCSP
response's age) are computed when scraped by a collector, so they are never stale. The
exposition runs in a thread: a collector may read a database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence

import prometheus_client
from aiohttp import web
from cryptography import x509
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# ``*_created`` series double every counter and say nothing an operator alerts on.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
#: Latency buckets (seconds): an exchange is milliseconds to a provider's timeout.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def new_registry() -> CollectorRegistry:
    """A registry for one application, with the process collector (start time, CPU, memory)."""
    registry = CollectorRegistry(auto_describe=True)
    prometheus_client.ProcessCollector(registry=registry)
    return registry


def metrics_handler(
    registry: CollectorRegistry,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A ``GET /metrics`` handler for ``registry`` (exposition in a thread)."""

    async def handler(_request: web.Request) -> web.Response:
        body = await asyncio.to_thread(prometheus_client.generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    return handler


class CertificateExpiry(Collector):
    """``NAME{LABELS...}``: seconds until each certificate's notAfter (negative: expired),
    read when scraped from ``source`` (label values, certificate)."""

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str],
        source: Callable[[], Iterable[tuple[Sequence[str], x509.Certificate]]],
    ) -> None:
        self.name, self.help_text, self.labels, self.source = name, help_text, labels, source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.help_text, labels=list(self.labels))
        now = dt.datetime.now(dt.UTC)
        for values, cert in self.source():
            family.add_metric(list(values), (cert.not_valid_after_utc - now).total_seconds())
        yield family


def serial_label(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


class ServerMetrics:
    """What an OCSP responder or a TSA counts: answers by result, and how long they took."""

    def __init__(self, registry: CollectorRegistry, prefix: str, what: str) -> None:
        self.answers = Counter(
            f"{prefix}_responses",
            f"{what} answered, by result.",
            ["result"],
            registry=registry,
        )
        self.latency = Histogram(
            f"{prefix}_request_duration_seconds",
            f"Seconds to answer one {what.rstrip('s')}.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, result: str, started: float) -> None:
        """``started``: :func:`time.perf_counter` when the request arrived."""
        self.answers.labels(result).inc()
        self.latency.observe(time.perf_counter() - started)
