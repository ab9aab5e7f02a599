"""The node's Prometheus metrics (``prometheus_client``), one registry per runtime.

Two kinds:

* **Counted on the message path** (:class:`NodeMetrics`): exchanges by direction, service,
  result and X-Road error code, their latency, policy decisions by reason, and the named
  counters of the extensions (:data:`COUNTERS`). These are this process's own: with
  several ``secnode serve`` processes on one database each scrape shows one process
  (sum them in Prometheus); the workers of one ``serve --workers`` are summed here.
* **Read when scraped** (:class:`NodeCollector`): health, the global configuration's
  version, age and validity, each certificate's remaining lifetime, the OCSP responses'
  age, and whatever the extensions report (message-log backlog ...). These come from the
  database and the held configuration, so every process on one database shows the same.

Label values that a peer or a client chooses (service, error code, policy reason) are
bounded (:class:`BoundedLabel`): a hostile caller cannot grow the registry without end.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from certs import metrics
from secnode.core import health

if TYPE_CHECKING:
    from secnode.app.extensions import Extension

#: Set by ``serve --workers``' supervisor (:mod:`secnode.app.workers`): prometheus_client's
#: multiprocess mode, read when it is imported.
METRICS_DIR_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

#: Directions of an exchange: ``outbound`` (our information system calls another node's
#: service, the client interface), ``inbound`` (another node calls ours).
OUTBOUND: Final = "outbound"
INBOUND: Final = "inbound"

#: The named counters an extension may bump with ``rt.count(name, value)``.
COUNTERS: Final[dict[str, str]] = {
    "messagelog_records_total": "Message-log records written.",
    "messagelog_write_errors_total": "Message-log writes that failed (the message was refused).",
    "messagelog_refused_total": "Messages refused because the message log could not take them.",
    "policy_seconds_total": "Wall seconds the policy hooks took on the message path.",
    "policy_errors_total": "Policy decisions that could not be made or recorded (refused).",
    "policy_provisions_total": "Provisions of personal data recorded by the policy point.",
    "policy_receipts_total": "Receipts recorded by the policy point on the client side.",
}

_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,79}$")


class BoundedLabel:
    """At most ``limit`` distinct values of one label; later new ones become ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: str, admit: bool = True) -> str:
        """``admit=False``: only a value seen before keeps its name."""
        if value in self.seen:
            return value
        if admit and len(self.seen) < self.limit:
            self.seen.add(value)
            return value
        return "other"


class NodeMetrics:
    """What the message path counts (see the module docstring)."""

    def __init__(self) -> None:
        self.registry: CollectorRegistry = metrics.new_registry()
        r = self.registry
        self.requests = Counter(
            "secnode_requests",
            "Exchanges by direction, service, result (ok, refused, error) and X-Road error "
            "code ('' when ok).",
            ["direction", "service", "result", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "secnode_request_duration_seconds",
            "Seconds from a request's arrival to its answer, by direction and service.",
            ["direction", "service"],
            buckets=metrics.LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "secnode_policy_decisions",
            "Policy decisions by side (client, provider), outcome (allow, deny) and reason.",
            ["side", "outcome", "reason"],
            registry=r,
        )
        self.named = {
            name: Counter(f"secnode_{name}", help_text, registry=r)
            for name, help_text in COUNTERS.items()
        }
        # A service gets its own label once it answered; refusals of never-answered
        # services (a caller's typo, a probe) share 'other'.
        self._services = BoundedLabel(1000)
        self._codes = BoundedLabel(200)
        self._reasons = BoundedLabel(200)

    def exposition(self, collector: Collector) -> CollectorRegistry:
        """What ``/metrics`` shows: these counters plus ``collector`` (read when scraped).

        Under ``serve --workers`` (``PROMETHEUS_MULTIPROC_DIR`` set by the supervisor) the
        counters are those of every worker, summed from their memory-mapped files.
        """
        directory = os.environ.get(METRICS_DIR_ENV)
        if not directory:
            self.registry.register(collector)
            return self.registry
        combined = CollectorRegistry(auto_describe=True)
        multiprocess.MultiProcessCollector(combined, path=directory)  # type: ignore[no-untyped-call]
        combined.register(collector)
        return combined

    def count(self, name: str, value: float = 1) -> None:
        """Bump a counter of :data:`COUNTERS` (an unknown name is a bug: KeyError)."""
        self.named[name].inc(value)

    def exchange(
        self, direction: str, service: str | None, code: str | None, seconds: float
    ) -> None:
        """One exchange ended: ``code`` None = answered, else the X-Road error code."""
        ok = code is None
        label = "-" if service is None else self._services(service, admit=ok)
        if ok:
            result, code_label = "ok", ""
        else:
            assert code is not None
            result = "error" if code.endswith("InternalError") else "refused"
            code_label = self._codes(code) if _CODE.match(code) else "invalid"
        self.requests.labels(direction, label, result, code_label).inc()
        self.latency.labels(direction, label).observe(seconds)

    def decision(self, side: str, allow: bool, reason: str) -> None:
        """One policy verdict (``reason`` '' when the decision point gives none)."""
        label = self._reason_label(reason)
        self.decisions.labels(side, "allow" if allow else "deny", label).inc()

    def _reason_label(self, reason: str) -> str:
        if not reason:
            return "none"
        return self._reasons(reason) if _CODE.match(reason) else "other"


class NodeCollector(Collector):
    """Gauges read when scraped; ``snapshot`` does the (blocking) database reads."""

    def __init__(
        self,
        snapshot: Callable[[], tuple[health.Health, dict[str, health.CertView]]],
        conf: Callable[[], health.ConfView | None],
        extensions: Callable[[], Iterable[Extension]],
    ) -> None:
        self.snapshot, self.conf, self.extensions = snapshot, conf, extensions

    def collect(self) -> Iterator[Metric]:
        result, certs = self.snapshot()
        now = dt.datetime.now(dt.UTC)
        yield _gauge(
            "secnode_healthy",
            "1 when /health answers 200 (ok or degraded).",
            [((), 1.0 if result.healthy else 0.0)],
        )
        yield _gauge(
            "secnode_degraded",
            "1 when peers refuse the auth certificate in use (not in the configuration).",
            [((), 1.0 if result.degraded else 0.0)],
        )
        yield from _conf_gauges(self.conf(), now)
        yield _gauge(
            "secnode_certificate_expiry_seconds",
            "Seconds until the certificate expires (negative: expired), per active certificate.",
            [((u, c.sha256[:16]), (c.not_after - now).total_seconds()) for u, c in certs.items()],
            ["usage", "sha256"],
        )
        freshness = float(result.report["ocsp_freshness_seconds"])
        yield _gauge(
            "secnode_ocsp_freshness_seconds",
            "How old an OCSP response may be (the configuration's ocsp_freshness_seconds).",
            [((), freshness)],
        )
        yield _gauge(
            "secnode_ocsp_age_seconds",
            "Age of the held OCSP response (now - thisUpdate), per certificate usage.",
            [((u,), age) for u, c in certs.items() if (age := health.ocsp_age(c, now)) is not None],
            ["usage"],
        )
        yield _gauge(
            "secnode_ocsp_good",
            "1 when the held OCSP response says good and is fresh.",
            [
                (
                    (u,),
                    1.0
                    if c.ocsp_status == "good" and health.ocsp_fresh(c, freshness, now)
                    else 0.0,
                )
                for u, c in certs.items()
            ],
            ["usage"],
        )
        yield _gauge(
            "secnode_ocsp_fetch_failures",
            "Consecutive failed OCSP fetches, per certificate usage.",
            [((u,), float(c.ocsp_failures)) for u, c in certs.items()],
            ["usage"],
        )
        for ext in self.extensions():
            yield from ext.collect()


def _good(cert: health.CertView, freshness: float, now: dt.datetime) -> float:
    return 1.0 if cert.ocsp_status == "good" and health.ocsp_fresh(cert, freshness, now) else 0.0


def _conf_gauges(conf: health.ConfView | None, now: dt.datetime) -> Iterator[Metric]:
    yield _gauge(
        "secnode_conf_version",
        "Version of the held global configuration (0: none).",
        [((), float(conf.version) if conf else 0.0)],
    )
    yield _gauge(
        "secnode_conf_age_seconds",
        "Seconds since the held global configuration was signed.",
        [((), (now - conf.generated_at).total_seconds())] if conf else [],
    )
    yield _gauge(
        "secnode_conf_validity_seconds",
        "Seconds from signing to expiry of the held global configuration.",
        [((), (conf.expires_at - conf.generated_at).total_seconds())] if conf else [],
    )
    yield _gauge(
        "secnode_conf_expires_in_seconds",
        "Seconds until the held global configuration expires (negative: expired).",
        [((), (conf.expires_at - now).total_seconds())] if conf else [],
    )


def _gauge(
    name: str,
    help_text: str,
    samples: Iterable[tuple[tuple[str, ...], float]],
    labels: list[str] | None = None,
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=labels or [])
    for values, value in samples:
        family.add_metric(list(values), value)
    return family
