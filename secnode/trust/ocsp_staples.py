"""The node's own OCSP staples: fetch, validate and record a fresh response per certificate.

Every message the node signs carries its sign certificate's OCSP response, and peers pin
the auth certificate's status; both must stay fresh. The background job in
:mod:`secnode.app.jobs` decides *when* to fetch (:func:`next_due`); this module fetches
for one certificate, records the answer or the failure (with exponential back-off) on the
certificate's row, so ``/health``, ``secnode certs list`` and every process sharing the
database see the same status.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from cryptography import x509
from sqlalchemy import select

from certs.chain import find_issuer
from certs.ocsp import OCSPError
from secnode.config import NodeConfig
from secnode.core.globalconf import GlobalConf, setting
from secnode.core.jsonfmt import format_time
from secnode.home import NodeHome
from secnode.store import models
from secnode.trust import own_certs

log = logging.getLogger("secnode.trust.ocsp_staples")

#: Shortest time between two fetches for the same certificate, whatever the settings say.
OCSP_MIN_GAP = 1.0


@dataclass(frozen=True)
class OcspOutcome:
    usage: str
    cert_sha256: str
    status: str | None  # good | revoked | unknown; None when the fetch failed
    error: str | None
    failures: int


def _cert_of(row: models.NodeCertificate) -> x509.Certificate:
    return x509.load_pem_x509_certificate(row.cert_pem.encode("ascii"))


def active_rows(node: NodeHome) -> list[models.NodeCertificate]:
    with node.sessions() as s:
        return list(
            s.scalars(
                select(models.NodeCertificate)
                .where(models.NodeCertificate.active)
                .order_by(models.NodeCertificate.usage)
            )
        )


def ocsp_rows(node: NodeHome) -> list[models.NodeCertificate]:
    """Certificates whose OCSP response is kept fresh: those in use and a pending renewal
    (so it can be put in use the moment its time comes, see :mod:`secnode.trust.renewal`)."""
    with node.sessions() as s:
        return list(
            s.scalars(
                select(models.NodeCertificate)
                .where(models.NodeCertificate.active | models.NodeCertificate.pending)
                .order_by(models.NodeCertificate.usage)
            )
        )


def stale_at(row: models.NodeCertificate, freshness: float) -> dt.datetime | None:
    """When the held response stops being usable (freshness or nextUpdate, earlier wins)."""
    if row.ocsp_this_update is None:
        return None
    limit = as_utc(row.ocsp_this_update) + dt.timedelta(seconds=freshness)
    if row.ocsp_next_update is not None:
        limit = min(limit, as_utc(row.ocsp_next_update))
    return limit


def next_due(row: models.NodeCertificate, interval: float, freshness: float) -> dt.datetime:
    """After a success: one interval later, or halfway to staleness if that comes first."""
    if row.ocsp_fetched_at is None:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    fetched = as_utc(row.ocsp_fetched_at)
    wait = interval
    limit = stale_at(row, freshness)
    if limit is not None:
        wait = min(wait, (limit - fetched).total_seconds() / 2)
    return fetched + dt.timedelta(seconds=max(OCSP_MIN_GAP, wait))


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


async def refresh_ocsp_one(
    node: NodeHome,
    row: models.NodeCertificate,
    conf: GlobalConf,
    config: NodeConfig,
    session: aiohttp.ClientSession | None = None,
    timeout: float = own_certs.OCSP_TIMEOUT,
) -> OcspOutcome:
    """Fetch and validate a response for one certificate and record it (or the failure)."""
    cert = _cert_of(row)
    freshness = setting(conf, "ocsp_freshness_seconds")
    issuer = find_issuer(cert, conf.ca_certs)
    try:
        if issuer is None:
            raise OCSPError(
                f"the issuer of the {row.usage} certificate is not an approved CA in global "
                f"configuration version {conf.version}"
            )
        status = await own_certs.fetch_status(
            cert, issuer, own_certs.responder_urls(cert, conf), freshness, session, timeout
        )
    except OCSPError as exc:
        return await asyncio.to_thread(_record_failure, node, row.id, str(exc), config)
    return await asyncio.to_thread(_record_success, node, row.id, status)


def _record_success(node: NodeHome, row_id: int, status: Any) -> OcspOutcome:
    with node.session() as s:
        row = s.get(models.NodeCertificate, row_id)
        assert row is not None
        before, had_failures = row.ocsp_status, row.ocsp_failures
        own_certs.record_status(row, status)
        usage, digest = row.usage, row.cert_sha256
    if status.status != "good":
        reason = f" ({status.revocation_reason})" if status.revocation_reason else ""
        log.error(
            "%s certificate %s... is %s%s according to OCSP: exchange needing it stops",
            usage,
            digest[:16],
            status.status,
            reason,
        )
    elif before != "good" or had_failures:
        log.info(
            "%s certificate %s...: OCSP good (thisUpdate %s)",
            usage,
            digest[:16],
            format_time(status.this_update),
        )
    return OcspOutcome(usage, digest, status.status, None, 0)


def _record_failure(node: NodeHome, row_id: int, error: str, config: NodeConfig) -> OcspOutcome:
    with node.session() as s:
        row = s.get(models.NodeCertificate, row_id)
        assert row is not None
        row.ocsp_failures = (row.ocsp_failures or 0) + 1
        wait = backoff(config, row.ocsp_failures)
        row.ocsp_error = (
            f"{error} (failed {row.ocsp_failures} time(s) in a row; next attempt in {wait:g} s)"
        )
        usage, digest, failures = row.usage, row.cert_sha256, row.ocsp_failures
    level = logging.WARNING if failures == 1 or failures % 10 == 0 else logging.DEBUG
    log.log(
        level,
        "OCSP for %s certificate %s... failed (%d in a row, retry in %g s): %s",
        usage,
        digest[:16],
        failures,
        wait,
        error,
    )
    return OcspOutcome(usage, digest, None, error, failures)


async def refresh_ocsp(
    node: NodeHome,
    conf: GlobalConf | None,
    config: NodeConfig,
    session: aiohttp.ClientSession | None = None,
) -> list[OcspOutcome]:
    """Fetch responses for every active (and pending) certificate now (``secnode sync``)."""
    rows = await asyncio.to_thread(ocsp_rows, node)
    if conf is None:
        return [
            OcspOutcome(r.usage, r.cert_sha256, None, "no global configuration yet", 0)
            for r in rows
        ]
    return [await refresh_ocsp_one(node, r, conf, config, session) for r in rows]


def backoff(config: NodeConfig, failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive failures: retry_min doubling to retry_max."""
    low, high = max(1, config.ocsp.retry_min), max(1, config.ocsp.retry_max)
    return float(min(high, low * 2 ** max(0, failures - 1)))
