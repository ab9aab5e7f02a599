"""Background jobs: keep the global configuration and the node's OCSP staples current.

Both jobs run inside ``secnode serve`` (:func:`start_jobs`) and once, on
demand, in ``secnode sync`` (:func:`run_once`); they share the same functions
so the one-shot command is an honest test of what the server does.

- **Global configuration**: fetched from ``[central] url`` + ``/globalconf``
  every ``conf_refresh_interval`` (the configuration's setting, capped by
  ``[central] refresh_interval``), verified against the anchor and kept on disk
  (:class:`secnode.globalconf.ConfStore`). A failed fetch keeps the last good
  copy; once that copy expires, ``rt.conf.is_expired()`` is true and the
  message path refuses to exchange. Every version change is logged. Every
  second the running node also looks at the held copy on disk, so a version
  kept by ``secnode sync`` or a sibling process is applied without waiting for
  its own next fetch (:class:`ConfFollower`).
- **OCSP**: for each active certificate of the node, a fresh response is
  fetched from the responders the configuration lists for its CA (AIA as a
  fallback) every ``ocsp_fetch_interval`` (``[ocsp] fetch_interval`` overrides
  it) and earlier if the held response would otherwise go stale. A responder
  that is down is retried with exponential back-off between ``[ocsp] retry_min``
  and ``retry_max``; the failure and next attempt are recorded with the
  certificate so ``/health`` and ``secnode certs list`` can say what is wrong.

Job outcomes are written to the database (``node_state`` and the certificate
rows), not only kept in memory, so the CLI and every node process sharing the
database see the same status.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization

from secnode.config import NodeConfig
from secnode.core.globalconf import GlobalConf, GlobalConfError, setting
from secnode.core.jsonfmt import cert_sha256_hex, format_time
from secnode.globalconf import ConfStore
from secnode.home import NodeHome
from secnode.store import models, replay
from secnode.trust import renewal
from secnode.trust.ocsp_staples import (
    OCSP_MIN_GAP,
    OcspOutcome,
    as_utc,
    backoff,
    next_due,
    ocsp_rows,
    refresh_ocsp,
    refresh_ocsp_one,
)

if TYPE_CHECKING:
    from secnode.app.runtime import NodeRuntime
    from secnode.app.serve import RunningNode

log = logging.getLogger("secnode.app.jobs")

CONF_STATE_KEY = "job.conf"
#: Longest sleep of the OCSP loop: newly imported certificates are picked up this fast.
OCSP_MAX_SLEEP = 5.0
#: Services, access rights and the client whitelist changed by the CLI (from any process
#: sharing the database) apply within this many seconds, without a restart.
SERVICES_RELOAD_INTERVAL = 2.0
#: How often ``secnode serve`` looks for a newer held configuration (one readlink).
CONF_FOLLOW_INTERVAL = 1.0


# ----- URLs -------------------------------------------------------------------------------
def central_base(config: NodeConfig) -> str:
    """``[central] url`` without a trailing ``/globalconf`` (operators paste either form)."""
    url = config.central.url.rstrip("/")
    return url.removesuffix("/globalconf")


def conf_url(config: NodeConfig) -> str:
    return central_base(config) + "/globalconf"


def register_url(config: NodeConfig) -> str:
    return central_base(config) + "/register"


# ----- settings ---------------------------------------------------------------------------
def conf_interval(config: NodeConfig, conf: GlobalConf | None) -> float:
    """The registry's refresh interval, capped by the node's own ``refresh_interval``."""
    local = config.central.refresh_interval
    central = setting(conf, "conf_refresh_interval") if conf is not None else local
    return float(max(1, min(local, central) if local > 0 else central))


def ocsp_interval(config: NodeConfig, conf: GlobalConf | None) -> float:
    """``[ocsp] fetch_interval`` if set, else the configuration's; below half the freshness."""
    wanted = config.ocsp.fetch_interval or setting(conf, "ocsp_fetch_interval")
    return float(max(OCSP_MIN_GAP, min(wanted, setting(conf, "ocsp_freshness_seconds") / 2)))


# ----- global configuration ---------------------------------------------------------------
@dataclass(frozen=True)
class ConfOutcome:
    """What one refresh did; ``version`` is the held version afterwards (None: none held)."""

    ok: bool
    version: int | None
    previous: int | None
    expires_at: dt.datetime | None
    error: str | None = None

    @property
    def changed(self) -> bool:
        return self.ok and self.version != self.previous


def read_conf_state(node: NodeHome) -> dict[str, Any]:
    """The last recorded outcome of the configuration job (empty if it never ran)."""
    raw = node.get_state(CONF_STATE_KEY)
    return json.loads(raw) if raw else {}


def _record_conf(node: NodeHome, outcome: ConfOutcome, at: dt.datetime) -> None:
    state = read_conf_state(node)
    stamp = format_time(at)
    state["attempt_at"] = stamp
    state["version"] = outcome.version
    if outcome.ok:
        state.update(ok_at=stamp, error=None, failing_since=None)
    else:
        state["error"] = outcome.error
        state["failing_since"] = state.get("failing_since") or stamp
    node.set_state(CONF_STATE_KEY, json.dumps(state, sort_keys=True))


def refresh_conf(node: NodeHome, timeout: float = 10.0) -> ConfOutcome:
    """Fetch, verify and keep the newest configuration (blocking; run it in a thread).

    Never raises for a network or verification failure: the outcome carries the
    reason and the last good copy stays in place.
    """
    store = ConfStore(node.dir.globalconf_dir)
    at = dt.datetime.now(dt.UTC)
    try:
        held = store.load_last_good()
    except GlobalConfError as exc:  # a damaged copy on disk: fetch a new one
        log.error("held global configuration is unusable: %s", exc)
        held = None
    previous = held.version if held else None
    try:
        conf = store.refresh(conf_url(node.dir.config), timeout=timeout)
    except (GlobalConfError, OSError) as exc:
        outcome = ConfOutcome(
            False, previous, previous, held.expires_at if held else None, str(exc)
        )
    else:
        outcome = ConfOutcome(True, conf.version, previous, conf.expires_at)
        if outcome.changed:
            log.info(
                "global configuration version %s -> %s (generated %s, expires %s)",
                previous if previous is not None else "none",
                conf.version,
                format_time(conf.generated_at),
                format_time(conf.expires_at),
            )
    _record_conf(node, outcome, at)
    return outcome


# ----- one shot ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SyncReport:
    conf: ConfOutcome
    ocsp: list[OcspOutcome]

    @property
    def ok(self) -> bool:
        return self.conf.ok and all(o.status == "good" for o in self.ocsp)


async def run_once(node: NodeHome) -> SyncReport:
    """Both jobs once, in order (the OCSP job needs the configuration's CA list)."""
    conf_outcome = await asyncio.to_thread(refresh_conf, node)
    try:
        conf = ConfStore(node.dir.globalconf_dir).load_last_good()
    except GlobalConfError:
        conf = None
    report = SyncReport(conf_outcome, await refresh_ocsp(node, conf, node.dir.config))
    await asyncio.to_thread(renewal.promote_due, node, conf)
    return report


# ----- inside secnode serve ---------------------------------------------------------------
def _ca_ders(conf: GlobalConf | None) -> set[bytes]:
    if conf is None:
        return set()
    return {c.public_bytes(serialization.Encoding.DER) for c in conf.ca_certs}


async def apply_conf_change(
    rt: NodeRuntime, running: RunningNode | None, old: GlobalConf | None
) -> None:
    """After a new version: forget trust verdicts, trust newly approved CAs at once and
    rebuild peer sessions.

    Everything else a version carries (nodes, members, subsystems, groups, settings,
    TSAs) is read from ``rt.conf`` by each message and each job round, so swapping
    ``rt.conf`` is all it takes for those.
    """
    from secnode.trust import tls

    if rt.conf is not None:
        rt.trust.reset_if_changed(rt.conf)  # settings or CAs may differ: re-judge signers
    new_ders, old_ders = _ca_ders(rt.conf), _ca_ders(old)
    if new_ders == old_ders:
        return
    added = [
        c
        for c in (rt.conf.ca_certs if rt.conf else [])
        if c.public_bytes(serialization.Encoding.DER) not in old_ders
    ]
    if added and running is not None and running.server_ssl is not None:
        tls.add_cas(running.server_ssl, added)
    log.info(
        "approved CAs changed (%d added, %d removed); rebuilding node-to-node sessions",
        len(added),
        len(old_ders - new_ders),
    )
    await rt.reopen_peer_session()


class ConfFollower:
    """Puts the newest verified copy on disk into use, whoever fetched it.

    Several processes may keep one ``globalconf/`` directory (``secnode sync``, sibling
    ``secnode serve`` processes); a version one of them kept must not wait for this
    process's own next fetch, let alone for the registry's next re-signing. The check
    is one ``readlink`` (:meth:`ConfStore.held_version`), so it runs every
    :data:`CONF_FOLLOW_INTERVAL`.
    """

    def __init__(self, rt: NodeRuntime, running: RunningNode | None) -> None:
        self.rt = rt
        self.running = running
        self._refused: int | None = None  # a held version that failed to load (logged once)

    def retry_refused(self) -> None:
        """After a fetch: a refused copy may have been replaced; look at it again."""
        self._refused = None

    def newer_on_disk(self) -> int | None:
        """The held version if it is newer than the one in use (None otherwise)."""
        held = self.rt.conf_store.held_version()
        if held is None or held == self._refused:
            return None
        in_use = self.rt.conf.version if self.rt.conf is not None else None
        return held if in_use is None or held > in_use else None

    async def adopt(self) -> bool:
        """Load, re-verify and apply a newer held copy; True if one was put into use."""
        held = self.newer_on_disk()
        if held is None:
            return False
        old = self.rt.conf
        try:
            conf = await asyncio.to_thread(self.rt.conf_store.load_last_good)
        except GlobalConfError as exc:
            # Pruned or switched while reading: the next look sees the new state. Logged
            # once per version so a copy that stays unusable does not flood the log.
            if held != self._refused:
                log.warning(
                    "held global configuration version %d is unusable, keeping version %s: %s",
                    held,
                    old.version if old else "none",
                    exc,
                )
            self._refused = held
            if old is None:
                self.rt.conf_error = str(exc)
            return False
        if conf is None or (old is not None and conf.version <= old.version):
            return False
        self.rt.conf, self.rt.conf_error = conf, None
        log.info(
            "now using global configuration version %d (was %s; generated %s, expires %s)",
            conf.version,
            old.version if old else "none",
            format_time(conf.generated_at),
            format_time(conf.expires_at),
        )
        await apply_conf_change(self.rt, self.running, old)
        return True


def _report_fetch(outcome: ConfOutcome, failures: int) -> int:
    """Log a failing registry once, every tenth attempt and on recovery; the new count."""
    if outcome.ok:
        if failures:
            log.info("central registry reachable again after %d failed attempt(s)", failures)
        return 0
    failures += 1
    if failures == 1 or failures % 10 == 0:
        log.warning(
            "global configuration refresh failed (%d in a row), keeping version %s: %s",
            failures,
            outcome.version,
            outcome.error,
        )
    return failures


async def conf_loop(rt: NodeRuntime, running: RunningNode | None = None) -> None:
    """Fetch the configuration every :func:`conf_interval`; apply any newer held copy
    within :data:`CONF_FOLLOW_INTERVAL`, whoever fetched it.

    A failing registry is logged when it starts failing, every tenth attempt after,
    and once more when the held copy expires (the moment exchange stops).
    """
    follower = ConfFollower(rt, running)
    failures = 0
    last_error: str | None = None
    reported_expiry: int | None = None
    fetched_at = -float("inf")
    if rt.conf is not None:
        log.info(
            "holding global configuration version %d (expires %s)",
            rt.conf.version,
            format_time(rt.conf.expires_at),
        )
    while True:
        try:
            if time.monotonic() - fetched_at >= conf_interval(rt.config, rt.conf):
                fetched_at = time.monotonic()
                outcome = await asyncio.to_thread(refresh_conf, rt.node)
                failures, last_error = _report_fetch(outcome, failures), outcome.error
                follower.retry_refused()
            await follower.adopt()
            conf = rt.conf
            if conf is not None and conf.is_expired() and reported_expiry != conf.version:
                log.error(
                    "global configuration version %d expired at %s and cannot be "
                    "refreshed (%s): message exchange stopped",
                    conf.version,
                    format_time(conf.expires_at),
                    last_error or "no newer one",
                )
                reported_expiry = conf.version
        except asyncio.CancelledError:
            raise
        except Exception:  # a job must outlive any single failure; the log says why
            log.exception("global configuration job failed")
        due = fetched_at + conf_interval(rt.config, rt.conf) - time.monotonic()
        await asyncio.sleep(max(0.05, min(CONF_FOLLOW_INTERVAL, due)))


async def apply_cert_change(rt: NodeRuntime, running: RunningNode | None) -> None:
    """A renewed auth certificate: present it on new TLS handshakes, both directions."""
    if rt.auth_cert is None:
        return
    if running is not None and running.server_ssl is not None:
        running.server_ssl.load_cert_chain(
            str(rt.auth_cert_file()), str(rt.auth_key_file()), password=rt.passphrase
        )
    await rt.reopen_peer_session()
    log.info(
        "now presenting auth certificate %s... on node-to-node TLS",
        cert_sha256_hex(rt.auth_cert.cert)[:16],
    )


RowState = tuple[str, dt.datetime | None, int]


def held_rows_state(rows: list[models.NodeCertificate]) -> dict[str, RowState]:
    """Per usage, the certificate in use and its last OCSP outcome, as the database has it.

    The newest active row per usage is the one :meth:`NodeRuntime.load_certificates` uses.
    ``ocsp_fetched_at`` moves on every fetched answer (good or revoked), ``ocsp_failures``
    on every failed fetch, whichever node process made it.
    """
    newest: dict[str, models.NodeCertificate] = {}
    for row in rows:
        held = newest.get(row.usage)
        if held is None or as_utc(row.imported_at) > as_utc(held.imported_at):
            newest[row.usage] = row
    return {
        usage: (
            row.cert_sha256,
            as_utc(row.ocsp_fetched_at) if row.ocsp_fetched_at else None,
            row.ocsp_failures or 0,
        )
        for usage, row in newest.items()
    }


def loaded_state(rt: NodeRuntime) -> dict[str, RowState]:
    """The same, for what the runtime holds in memory (compare with :func:`held_rows_state`)."""
    state: dict[str, RowState] = {}
    for usage in ("auth", "sign"):
        own = getattr(rt, f"{usage}_cert")
        if own is not None and own.view is not None:
            view = own.view
            state[usage] = (view.sha256, view.ocsp_fetched_at, view.ocsp_failures)
    return state


async def ocsp_loop(rt: NodeRuntime, running: RunningNode | None = None) -> None:
    """Keep a fresh OCSP response for every active certificate, with back-off on failure.

    Also notices certificates imported by the CLI while the node runs, and OCSP
    answers (a revocation too) or failures recorded by another node process sharing
    the database: the runtime reloads them, and a new auth certificate is put into
    the TLS contexts. The check costs one small query per round (at most
    :data:`OCSP_MAX_SLEEP` apart).
    """
    retry_at: dict[str, dt.datetime] = {}
    loaded: dict[str, str] | None = None
    while True:
        sleep = OCSP_MAX_SLEEP
        try:
            await asyncio.to_thread(renewal.promote_due, rt.node, rt.conf)
            rows = await asyncio.to_thread(ocsp_rows, rt.node)
            in_use = [r for r in rows if r.active]
            current = {r.usage: r.cert_sha256 for r in in_use}
            if current != loaded or held_rows_state(in_use) != loaded_state(rt):
                rt.apply_certificates(await asyncio.to_thread(rt.read_certificates))
                if loaded is not None and current.get("auth") != loaded.get("auth"):
                    await apply_cert_change(rt, running)
                loaded = current
            conf = rt.conf
            if conf is None:
                sleep = float(rt.config.ocsp.retry_min)
            else:
                sleep = await _ocsp_round(rt, rows, conf, retry_at)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("OCSP job failed")
        await asyncio.sleep(max(0.2, min(sleep, OCSP_MAX_SLEEP)))


async def _ocsp_round(
    rt: NodeRuntime,
    rows: list[models.NodeCertificate],
    conf: GlobalConf,
    retry_at: dict[str, dt.datetime],
) -> float:
    """Refresh what is due; return seconds until the next certificate is due."""
    interval = ocsp_interval(rt.config, conf)
    freshness = setting(conf, "ocsp_freshness_seconds")
    now = dt.datetime.now(dt.UTC)
    wake = now + dt.timedelta(seconds=OCSP_MAX_SLEEP)
    changed = False
    for row in rows:
        due = retry_at.get(row.cert_sha256) if row.ocsp_failures else None
        due = due or next_due(row, interval, freshness)
        if due <= now:
            outcome = await refresh_ocsp_one(rt.node, row, conf, rt.config, rt.service_session)
            now = dt.datetime.now(dt.UTC)
            if outcome.status is None:
                due = now + dt.timedelta(seconds=backoff(rt.config, outcome.failures))
                retry_at[row.cert_sha256] = due
            else:
                retry_at.pop(row.cert_sha256, None)
                changed = True
                due = now + dt.timedelta(seconds=max(OCSP_MIN_GAP, min(interval, freshness / 2)))
        wake = min(wake, due)
    if changed:
        rt.apply_certificates(await asyncio.to_thread(rt.read_certificates))
    return (wake - dt.datetime.now(dt.UTC)).total_seconds()


async def services_loop(rt: NodeRuntime) -> None:
    """Re-read services and access rights so CLI changes apply without a restart."""
    while True:
        await asyncio.sleep(SERVICES_RELOAD_INTERVAL)
        try:
            await asyncio.to_thread(rt.reload_services)
        except Exception:
            log.exception("reloading services failed")


def start_jobs(rt: NodeRuntime, running: RunningNode | None = None) -> list[asyncio.Task[None]]:
    """Start every background job; :meth:`RunningNode.stop` cancels them."""
    jobs: dict[str, Coroutine[Any, Any, None]] = {
        "conf": conf_loop(rt, running),
        "ocsp": ocsp_loop(rt, running),
        "services": services_loop(rt),
        "replay": replay.purge_loop(rt, running),
    }
    return [asyncio.create_task(job, name=f"secnode.{name}") for name, job in jobs.items()]
