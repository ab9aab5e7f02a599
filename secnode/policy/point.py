"""The node's policy decision point (``rt.decision``), on both sides of an exchange.

Provider node, per request: build the policy request from the *signed* headers,
decide with the core's ``decide`` against the stored policy (deny by default, any
error denies), write the decision-log row, and answer with a :class:`Verdict`
whose ``record`` text (reason, article, decision digest) goes into the
time-stamped message-log record. After the service answered: cut the response to
the permitted fields, write the provider record (APPI Art. 29) and attach a
signed policy statement for the client node.

Client node: refuse early what the local copy of the classification already
shows missing (``precheck``, same reason codes), and after a verified response
write the receipt record (APPI Art. 30) from the provider's signed statement.

A node whose store holds no policy yet (fresh install, nothing imported or
classified) is *not enforcing*: access rights alone decide, as in X-Road, and
``/health`` warns. The first registry change turns enforcement on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine

from secnode.core.errors import XRoadError
from secnode.core.message import MAX_POLICY_STATEMENT_BYTES, Body, MessageHeaders
from secnode.core.policy import (
    DataClass,
    Decision,
    FieldFilterError,
    ObligationKind,
    PolicyRequest,
    PolicyRequestError,
    PolicySnapshot,
    Reason,
    decide,
    filter_fields,
    precheck,
)
from secnode.messagelog.convert import headers_sha256
from secnode.policy import records, store
from secnode.policy.common import canonical, sha256_hex, utc_text
from secnode.policy.evaluation import evaluate, malformed_entry, request_of
from secnode.policy.worker import Worker
from secnode.proxy import metaservices
from secnode.proxy.hooks import Verdict

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from secnode.app.runtime import NodeRuntime

log = logging.getLogger("secnode.policy")

REFRESH_SECONDS = 1.0
"""How stale the cached enforcement switch may be where no batch reads it (client side,
non-enforcing provider). An enforcing provider re-reads it with every batch."""
NO_POLICY = "NO_POLICY"
PROVIDER_DECIDES = "PROVIDER_DECIDES"
NOT_FILTERABLE = "Server.ServerProxy.ServiceFailed.NotFilterable"
SERVER_RECORD_FAILED = "Server.ServerProxy.PolicyRecordFailed"
CLIENT_RECORD_FAILED = "Server.ClientProxy.PolicyRecordFailed"
BAD_STATEMENT = "Server.ClientProxy.InconsistentResponse"


class PolicyPoint:
    """:class:`~secnode.proxy.hooks.DecisionPoint` backed by the node's policy store."""

    def __init__(
        self,
        engine: Engine,
        node_id: str,
        member: str,
        retention_years: int,
        count: Callable[..., None] = lambda _name, _value=1: None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.node_id = node_id
        self.clock = clock
        self.member = member
        self.years = retention_years
        self.count = count
        self.worker = Worker(engine, prepare=self._refresh)
        self.generation = -1
        self.enforcing = False
        self.registry: PolicySnapshot | None = None
        self.load_error: str | None = None
        self.checked = 0.0
        self.task: asyncio.Task[None] | None = None

    # ----- snapshot cache (runs on the worker thread) -----------------------------------------
    def _refresh(self, conn: Connection) -> None:
        """Re-read the generation; reload and validate the registry when it moved."""
        gen, enforcing = store.generation(conn)
        if gen != self.generation:
            try:
                registry, error = store.load_registry(conn), None
            except Exception as exc:  # an invalid store decides nothing: SYSTEM_ERROR
                registry, error = None, f"{type(exc).__name__}: {exc}"
                log.error("policy store does not load (every request is refused): %s", error)
            self.registry, self.load_error = registry, error
            self.generation = gen
            if error is None:
                log.info(
                    "policy generation %d loaded (%s)", gen, registry.digest if registry else "-"
                )
        self.enforcing = enforcing
        self.checked = time.monotonic()

    async def refresh(self) -> None:
        await self.worker.run(lambda _conn: None)

    async def _fresh(self) -> None:
        if time.monotonic() - self.checked > REFRESH_SECONDS:
            await self.refresh()

    async def keep_fresh(self) -> None:
        """Re-read the generation twice per ``REFRESH_SECONDS`` (``secnode serve``), so the
        fast path and the client-side check always have a confirmed registry and no
        request waits for a refresh."""
        while True:
            await asyncio.sleep(REFRESH_SECONDS / 2)
            try:
                await self.refresh()
            except Exception as exc:  # the next decision's own transaction will tell
                log.warning("policy registry refresh failed: %s", exc)

    # ----- DecisionPoint ----------------------------------------------------------------------
    # Each hook adds its wall time (waits for the store included) to policy_seconds_total:
    # the policy's share of a message's latency, read by the benchmark from /metrics.
    async def decide(self, headers: MessageHeaders, side: str) -> Verdict:
        started = time.perf_counter()
        try:
            return await self._decide(headers, side)
        finally:
            self.count("policy_seconds_total", time.perf_counter() - started)

    async def after_response(
        self, headers: MessageHeaders, verdict: Verdict, body: Body, content_type: str
    ) -> Body:
        started = time.perf_counter()
        try:
            return await self._after_response(headers, verdict, body, content_type)
        finally:
            self.count("policy_seconds_total", time.perf_counter() - started)

    async def on_response(
        self,
        headers: MessageHeaders,
        verdict: Verdict,
        status: int,
        body: Body,
        statement: str | None,
    ) -> None:
        started = time.perf_counter()
        try:
            await self._on_response(headers, verdict, status, body, statement)
        finally:
            self.count("policy_seconds_total", time.perf_counter() - started)

    async def _decide(self, headers: MessageHeaders, side: str) -> Verdict:
        if metaservices.provider_metaservice(headers.service) is not None:
            return Verdict(True, "NOT_PERSONAL_DATA", "metaservice answered by the node")
        if side == "client":
            return await self._client(headers)
        return await self._provider(headers)

    async def _provider(self, headers: MessageHeaders) -> Verdict:
        if not self.enforcing:
            await self._fresh()
            if not self.enforcing:
                return Verdict(True, NO_POLICY, "no policy is enforced on this node")
        try:
            request: PolicyRequest | None = request_of(headers)
            malformed = ""
        except PolicyRequestError as exc:
            request, malformed = None, str(exc)
        if request is not None:
            fast = self._non_personal(headers, request)
            if fast is not None:
                return fast

        def job(conn: Connection) -> tuple[dict[str, Any], str, Decision | None] | None:
            if not self.enforcing:
                return None
            at = self.clock()
            decision = None
            if request is None:
                entry = malformed_entry(
                    headers.client, headers.service, headers.message_id, malformed, at
                )
                entry.update(
                    {
                        "side": "provider",
                        "node": self.node_id,
                        "headers_sha256": _headers_sha256(headers),
                    }
                )
                digest = sha256_hex(canonical(entry))
            else:
                decision = evaluate(conn, self.registry, request, at, lock=True)
                entry, digest = records.decision_entry(
                    decision, "provider", self.node_id, _headers_sha256(headers)
                )
                if decision.allow and decision.agreement_id:
                    records.count_use(conn, decision.agreement_id, at)
            records.insert_decision(conn, entry, digest, at, self.years)
            return entry, digest, decision

        try:
            outcome = await self.worker.run(job)
        except Exception as exc:  # the decision could not be recorded: refuse (fail closed)
            self.count("policy_errors_total")
            return Verdict(
                False,
                "SYSTEM_ERROR",
                f"the policy decision could not be made or recorded ({type(exc).__name__})",
            )
        if outcome is None:
            return Verdict(True, NO_POLICY, "no policy is enforced on this node")
        entry, digest, decision = outcome
        return _verdict(entry, digest, decision)

    def _non_personal(self, headers: MessageHeaders, request: PolicyRequest) -> Verdict | None:
        """Fast path for requests that touch only non-personal fields (most traffic).

        Their outcome depends on the classification alone (no consent, no quota), so
        the cached registry decides, on the event loop, when it was confirmed current
        within ``REFRESH_SECONDS``; the decision row is written behind (batched). The
        message-log record, written durably before the service is called, names the
        decision's digest. Anything else takes the transactional path.
        """
        registry = self.registry
        if registry is None or time.monotonic() - self.checked > REFRESH_SECONDS:
            return None
        service = registry.service(request.service)
        if service is None:
            return None
        classes = service.classes_of(request.fields if service.declares_fields else None)
        if not classes or classes != {DataClass.NON_PERSONAL}:
            return None
        at = self.clock()
        decision = decide(request, registry, at)
        if not decision.allow or decision.reason is not Reason.NOT_PERSONAL_DATA:
            return None
        entry, digest = records.decision_entry(
            decision, "provider", self.node_id, _headers_sha256(headers)
        )
        self.worker.defer_insert(
            records.INSERT_DECISION, records.decision_params(entry, digest, at, self.years)
        )
        return _verdict(entry, digest, decision)

    async def _client(self, headers: MessageHeaders) -> Verdict:
        await self._fresh()
        registry = self.registry
        if not self.enforcing or registry is None:
            return Verdict(True, PROVIDER_DECIDES)
        at = self.clock()
        try:
            request = request_of(headers)
        except PolicyRequestError as exc:
            entry = malformed_entry(
                headers.client, headers.service, headers.message_id, str(exc), at
            )
            entry.update(
                {"side": "client", "node": self.node_id, "headers_sha256": _headers_sha256(headers)}
            )
            return await self._client_refusal(entry, None, at)
        decision = precheck(request, registry, at)
        if decision is None:
            return Verdict(True, PROVIDER_DECIDES)
        entry, _ = records.decision_entry(
            decision, "client", self.node_id, _headers_sha256(headers)
        )
        return await self._client_refusal(entry, decision, at)

    async def _client_refusal(
        self, entry: dict[str, Any], decision: Decision | None, at: dt.datetime
    ) -> Verdict:
        digest = sha256_hex(canonical(entry))
        try:
            await self.worker.run(
                lambda conn: records.insert_decision(conn, entry, digest, at, self.years),
                fresh=False,
            )
        except Exception:
            log.exception("could not write the client-side decision row")
        return _verdict(entry, digest, decision)

    async def _after_response(
        self, headers: MessageHeaders, verdict: Verdict, body: Body, content_type: str
    ) -> Body:
        details = verdict.details
        if not verdict.allow or "decision_sha256" not in details:
            return body
        if verdict.permitted_fields is not None and details.get("filter"):
            body = _filtered(body, verdict.permitted_fields)
        provision = details.get("provision")
        if provision is None:
            return body
        at = self.clock()
        statement = _statement(headers, details, self.member)
        text = canonical(statement)
        if len(text.encode("utf-8")) > MAX_POLICY_STATEMENT_BYTES:
            raise XRoadError(
                SERVER_RECORD_FAILED,
                "policy: the policy statement exceeds "
                f"{MAX_POLICY_STATEMENT_BYTES} bytes; nothing was released",
            )
        record = {
            **provision,
            "provider": self.member,
            "service": str(headers.service),
            "provided_at": utc_text(at),
            "message_id": headers.message_id,
            "decision_sha256": details["decision_sha256"],
            "data_items": statement["data_items"],
            "statement_sha256": sha256_hex(text),
        }
        try:
            await self.worker.run(
                lambda conn: records.insert_provision(
                    conn, at, headers.message_id, details["decision_sha256"], record, self.years
                ),
                fresh=False,
            )
        except Exception as exc:
            raise XRoadError(
                SERVER_RECORD_FAILED,
                "policy: the provider record (APPI Art. 29) "
                f"could not be written ({type(exc).__name__}); nothing was "
                "released",
            ) from exc
        verdict.statement = text
        self.count("policy_provisions_total")
        return body

    async def _on_response(
        self,
        headers: MessageHeaders,
        verdict: Verdict,
        status: int,
        body: Body,
        statement: str | None,
    ) -> None:
        if statement is None:
            return
        try:
            said = json.loads(statement)
            if not isinstance(said, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise XRoadError(
                BAD_STATEMENT,
                f"the provider's policy statement is not readable: {exc}",
                http_status=502,
            ) from exc
        receipt = said.get("receipt")
        if not isinstance(receipt, dict):
            return
        if (
            said.get("service") != str(headers.service)
            or said.get("message_id") != headers.message_id
        ):
            raise XRoadError(
                BAD_STATEMENT,
                "the provider's policy statement names another message or service",
                http_status=502,
            )
        at = self.clock()
        record = {
            **receipt,
            "received_at": utc_text(at),
            "service": said["service"],
            "client": str(headers.client),
            "message_id": headers.message_id,
            "subject_ref": said.get("subject_ref"),
            "data_items": said.get("data_items"),
            "basis": said.get("basis"),
            "record_type": said.get("record_type"),
            "consent_id": said.get("consent_id"),
            "agreement": said.get("agreement"),
            "decision_sha256": said.get("decision_sha256"),
            "http_status": status,
            "duties": said.get("duties", []),
            "statement_sha256": sha256_hex(statement),
        }
        digest = record["statement_sha256"]
        try:
            await self.worker.run(
                lambda conn: records.insert_receipt(
                    conn, at, headers.message_id, record, digest, self.years
                ),
                fresh=False,
            )
        except Exception as exc:
            raise XRoadError(
                CLIENT_RECORD_FAILED,
                "policy: the receipt record (APPI Art. 30) "
                f"could not be written ({type(exc).__name__}); the response was "
                "not handed over",
                http_status=500,
            ) from exc
        self.count("policy_receipts_total")

    # ----- extension: /health, /metrics, stop -------------------------------------------------
    name = "policy"

    def collect(self) -> Iterable[Metric]:
        return ()  # its counters go through the runtime's (rt.count)

    async def close(self) -> None:
        """Stop refreshing and write the decision-log rows still queued behind."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await asyncio.to_thread(self.worker.close)

    def health(self) -> dict[str, Any]:
        registry = self.registry
        out: dict[str, Any] = {
            "enforcing": self.enforcing,
            "generation": self.generation,
            "policy_version": registry.policy_version if registry else None,
            "digest": registry.digest if registry else None,
            "load_error": self.load_error,
            "batches": self.worker.stats.batches,
            "jobs": self.worker.stats.jobs,
            "store_failures": self.worker.stats.failures,
            "rows_written_behind": self.worker.stats.rows,
            "rows_lost": self.worker.stats.rows_lost,
            "reasons": [],
            "warnings": [],
        }
        if self.worker.stats.rows_lost:
            out["warnings"].append(
                f"policy: {self.worker.stats.rows_lost} decision-log "
                "row(s) written behind were lost (see the node log)"
            )
        if self.enforcing and self.load_error:
            out["reasons"].append(
                f"policy: the stored policy does not load, every request is "
                f"refused: {self.load_error}"
            )
        elif not self.enforcing:
            out["warnings"].append(
                "policy: not enforced (no policy imported or classified); "
                "access rights alone decide"
            )
        return out


# ----- helpers ------------------------------------------------------------------------------------
def _headers_sha256(headers: MessageHeaders) -> str:
    """The message log's digest of these headers: the decision row names the logged message."""
    return headers_sha256(headers).hex()


def _verdict(entry: dict[str, Any], digest: str, decision: Decision | None) -> Verdict:
    reason = str(entry["reason"])
    article = entry.get("article")
    anchor = f"{article}; " if article else ""
    details: dict[str, Any] = {
        "decision": entry["decision"],
        "reason": reason,
        "article": article,
        "decision_sha256": digest,
        "basis": entry.get("basis"),
        "agreement": entry.get("agreement"),
        "consent_id": entry.get("consent_id"),
        "subject_ref": entry.get("subject_ref"),
        "record_type": entry.get("record_type"),
    }
    if decision is None:
        return Verdict(
            False,
            reason,
            f"{entry.get('message', 'malformed policy headers')} [decision sha256:{digest}]",
            details=details,
            record=f"policy {reason} decision sha256:{digest}",
        )
    if not decision.allow:
        return Verdict(
            False,
            reason,
            f"{decision.message} [{anchor}decision sha256:{digest}]",
            details=details,
            record=f"policy {reason} decision sha256:{digest}",
        )
    provision = decision.obligation(ObligationKind.PROVISION_RECORD)
    receipt = decision.obligation(ObligationKind.RECEIPT_RECORD)
    details.update(
        {
            "filter": decision.obligation(ObligationKind.FILTER_FIELDS) is not None,
            "provision": dict(provision.params) if provision else None,
            "receipt": dict(receipt.params) if receipt else None,
            "duties": [o.to_json() for o in decision.obligations if o.kind in _DUTIES],
        }
    )
    fields = list(decision.permitted_fields) if decision.permitted_fields is not None else None
    return Verdict(
        True,
        reason,
        decision.message,
        permitted_fields=fields,
        details=details,
        record=f"policy {reason} ({article or '-'}) decision sha256:{digest}",
    )


_DUTIES = frozenset(
    {
        ObligationKind.DELETE_AFTER,
        ObligationKind.NO_ONWARD_TRANSFER,
        ObligationKind.INFORM_PROVIDER,
        ObligationKind.USE_LIMITATION,
        ObligationKind.MARK_ANONYMIZED,
        ObligationKind.NO_REIDENTIFICATION,
    }
)


def _filtered(body: Body, permitted: list[str]) -> Body:
    """The response cut to the permitted fields; anything unfilterable is not released."""
    if not body.strip():
        return body
    try:
        data = json.loads(body)
        kept = filter_fields(data, permitted)
    except (ValueError, FieldFilterError) as exc:
        raise XRoadError(
            NOT_FILTERABLE,
            "policy: the service's response cannot be cut to the "
            f"permitted fields ({exc}); nothing was released",
        ) from None
    return json.dumps(kept, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _statement(headers: MessageHeaders, details: dict[str, Any], member: str) -> dict[str, Any]:
    """What the provider signs for the client node: the decision and the Art. 30 items."""
    provision = details["provision"]
    return {
        "v": 1,
        "decision": "ALLOW",
        "reason": details["reason"],
        "article": details["article"],
        "decision_sha256": details["decision_sha256"],
        "message_id": headers.message_id,
        "service": str(headers.service),
        "provider": member,
        "basis": details["basis"],
        "record_type": details["record_type"],
        "agreement": details["agreement"],
        "consent_id": details["consent_id"],
        "subject_ref": details["subject_ref"],
        "data_items": provision.get("data_items"),
        "receipt": details["receipt"],
        "duties": details["duties"],
    }


async def attach(rt: NodeRuntime) -> PolicyPoint:
    """Make the policy store the node's decision point; add its ``/health`` section."""
    from secnode.store import db

    engine = db.make_engine(rt.node.dir.db_url)
    point = PolicyPoint(
        engine,
        str(rt.node.node_id),
        str(rt.member),
        rt.config.policy.records_retention_years,
        rt.count,
    )
    await point.refresh()
    point.task = asyncio.get_running_loop().create_task(point.keep_fresh(), name="policy-refresh")
    rt.decision = point
    rt.extensions.append(point)
    log.info(
        "policy: %s (generation %d)",
        "enforcing" if point.enforcing else "not enforcing (no policy yet)",
        point.generation,
    )
    return point
