"""``GET /metrics`` of ``central serve``: requests by route and result, their latency, and, read
from the database when scraped, the newest configuration's version, age and validity and
the signing keys' certificate lifetimes (every ``central serve`` on one database reports
the same configuration; the request counters are this process's own)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select

from central import publish
from central.models import SigningKey
from central.signing import cert_of
from central.store import Store, now
from certs import metrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: The problem code a handler's refusal set (the error middleware stores it here).
PROBLEM_CODE = web.RequestKey("central_problem_code", str)


class ConfCollector(Collector):
    """The newest published configuration and the signing certificates, at scrape time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        version = GaugeMetricFamily(
            "central_globalconf_version", "Version of the newest configuration (0: none)."
        )
        age = GaugeMetricFamily(
            "central_globalconf_age_seconds", "Seconds since the newest configuration was signed."
        )
        validity = GaugeMetricFamily(
            "central_globalconf_validity_seconds",
            "Seconds from signing to expiry of the newest configuration.",
        )
        expires = GaugeMetricFamily(
            "central_globalconf_expires_in_seconds",
            "Seconds until the newest configuration expires (negative: expired).",
        )
        head = publish.head(self.store)
        at = now()
        version.add_metric([], head.version if head else 0)
        if head is not None:
            age.add_metric([], (at - head.generated_at).total_seconds())
            validity.add_metric([], (head.expires_at - head.generated_at).total_seconds())
            expires.add_metric([], (head.expires_at - at).total_seconds())
        yield from (version, age, validity, expires)
        certs = GaugeMetricFamily(
            "central_signing_certificate_expiry_seconds",
            "Seconds until a configuration signing certificate expires, per active or "
            "announced key.",
            labels=["state", "sha256"],
        )
        with self.store.read() as s:
            rows = list(s.scalars(select(SigningKey).where(SigningKey.state != "retired")))
        for row in rows:
            left = (cert_of(row).not_valid_after_utc - at).total_seconds()
            certs.add_metric([row.state, row.cert_sha256[:16]], left)
        yield certs


class RegistryMetrics:
    """The request counters and the collector, in one registry per application."""

    def __init__(self, store: Store) -> None:
        self.registry: CollectorRegistry = metrics.new_registry()
        self.requests = Counter(
            "central_http_requests",
            "Requests answered, by route, HTTP status and problem code ('' when none).",
            ["route", "status", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "central_http_request_duration_seconds",
            "Seconds to answer a request, by route.",
            ["route"],
            buckets=metrics.LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(ConfCollector(store))

    def middleware(self) -> Middleware:
        """Count every answer (the outermost middleware, so refusals are counted too)."""

        @web.middleware
        async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                resource = request.match_info.route.resource
                route = resource.canonical if resource is not None else "unmatched"
                code = request.get(PROBLEM_CODE, "")
                self.requests.labels(route, str(status), code).inc()
                self.latency.labels(route).observe(time.perf_counter() - started)

        return count
