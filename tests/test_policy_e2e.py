"""Policy end to end over two real nodes.

Aizu provides a personal-data service (a small counting REST service run by this
test) under an agreement and a recorded consent; Takamatsu's information system
calls it through its node. An allowed request reaches the service, is cut to the
agreed fields and leaves a provider record on Aizu and a receipt record on
Takamatsu; after ``consent withdraw`` the same request is refused with
``CONSENT_NOT_VALID`` and the service is never called; both outcomes are in the
message log that ``secnode log verify`` accepts, and the log records name the
decisions. The transparency report of a scripted run matches what was sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from secnode.core.policy import fiscal_year_of
from secnode.demo.calls import CallResult, http
from secnode.demo.federation import Federation
from secnode.demo.node import DemoError, NodeHandle
from secnode.demo.two_cities import build_two_city_federation
from tests.conftest import free_port

pytestmark = pytest.mark.slow

AIZU = "JP/GOV/072028"
TAKAMATSU = "JP/GOV/372013"
SERVICE = f"{AIZU}/residents/person"
PERSON = {
    "id": "1001",
    "name": "会津 花子",
    "address": "福島県会津若松市追手町1-1",
    "birth_year": 1990,
    "income": 4_200_000,
}


class PersonService:
    """A provider system that counts its calls (the node must not call it when refusing)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.calls = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _person(self, request: web.Request) -> web.StreamResponse:
        """The record in two writes with a pause: the nodes must read bodies to the end."""
        self.calls += 1
        body = json.dumps(
            {**PERSON, "id": request.match_info["rid"], "notes": "x" * 200_000}
        ).encode()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(body[:1000])
        await asyncio.sleep(0.05)
        await response.write(body[1000:])
        await response.write_eof()
        return response

    def start(self) -> None:
        app = web.Application()
        app.router.add_get("/person/{rid}", self._person)
        self.runner = web.AppRunner(app, access_log=None)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def policy_document() -> dict[str, Any]:
    law = ["WELFARE-ELIGIBILITY"]
    return {
        "format": "secnode-policy",
        "format_version": 1,
        "policy_version": "e2e-1",
        "members": [
            {
                "id": AIZU,
                "legal_type": "PUBLIC_BODY",
                "name": "会津若松市",
                "address": "福島県会津若松市東栄町3-46",
                "representative": "会津若松市長",
            },
            {
                "id": TAKAMATSU,
                "legal_type": "PUBLIC_BODY",
                "name": "高松市",
                "address": "香川県高松市番町1-8-15",
                "representative": "高松市長",
            },
        ],
        "purposes": [
            {
                "code": "WELFARE-ELIGIBILITY",
                "label_ja": "福祉の受給資格確認",
                "label_en": "Welfare eligibility",
            }
        ],
        "services": [
            {
                "id": SERVICE,
                "title": "住民情報",
                "fields": [
                    {"name": n, "class": "PERSONAL"}
                    for n in ("id", "name", "address", "birth_year", "income", "notes")
                ],
                "registered_purposes": law,
                "subject_required": True,
                "acquisition_circumstances": "住民基本台帳法に基づき取得",
            }
        ],
        "agreements": [
            {
                "uid": "DSA-E2E",
                "version": 1,
                "title": "福祉照会",
                "type": "PROVISION",
                "state": "ACTIVE",
                "assigner": AIZU,
                "assignee": [f"{TAKAMATSU}/portal", f"{AIZU}/portal"],
                "valid_from": "2025-04-01",
                "valid_to": "2031-03-31",
                "permission": [
                    {
                        "target": SERVICE,
                        "action": "use",
                        "statute_ref": "生活保護法29条",
                        "constraint": [
                            {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": law},
                            {
                                "leftOperand": "legalBasis",
                                "operator": "isAnyOf",
                                "rightOperand": ["CONSENT", "APPI69-1-LAW"],
                            },
                            {
                                "leftOperand": "dataItem",
                                "operator": "isPartOf",
                                "rightOperand": ["name", "address"],
                            },
                        ],
                    }
                ],
            }
        ],
        "consents": [
            {
                "consent_id": "CR-E2E",
                "subject_ref": "S-E2E",
                "controller": AIZU,
                "recipients": [f"{TAKAMATSU}/portal"],
                "services": [SERVICE],
                "purposes": law,
                "status": "ConsentGiven",
                "given_at": "2025-04-01T00:00:00+09:00",
                "expires_at": "2031-03-31T00:00:00+09:00",
            }
        ],
    }


@dataclass
class World:
    fed: Federation
    service: PersonService
    tmp: Path
    sent: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    @property
    def aizu(self) -> NodeHandle:
        return self.fed.nodes["aizu"]

    @property
    def taka(self) -> NodeHandle:
        return self.fed.nodes["takamatsu"]

    def cli(self, node: NodeHandle, *args: str | Path) -> str:
        return self.fed.run("secnode", *args, "--dir", node.dir)

    def cli_json(self, node: NodeHandle, *args: str | Path) -> Any:
        return json.loads(self.cli(node, *args, "--json"))

    def call(
        self,
        via: NodeHandle,
        basis: str,
        subject: str,
        *,
        items: str = "name,address",
        consent: str | None = None,
        purpose: str | None = "WELFARE-ELIGIBILITY",
        message_id: str | None = None,
    ) -> tuple[str, CallResult]:
        mid = message_id or str(uuid.uuid4())
        headers = {
            "X-Road-Client": via.client_id,
            "X-Road-Id": mid,
            "X-Road-UserId": "clerk-7",
            "X-Road-Issue": "WEL-2026-0042",
            "X-Road-Legal-Basis": basis,
            "X-Road-Data-Subject": subject,
            "X-Road-Data-Items": items,
        }
        if purpose:
            headers["X-Road-Purpose"] = purpose
        if consent:
            headers["X-Road-Consent-Id"] = consent
        result = http("GET", f"{via.client_url}/r1/{SERVICE}/1001", None, headers)
        allowed = result.status == 200
        self.sent[(basis, via.member, "provisions" if allowed else "refused")] += 1
        return mid, result


def wait(what: str, check: Any, timeout: float = 30, detail: Any = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {detail()}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("policy-e2e")
    service = PersonService()
    service.start()
    fed = build_two_city_federation(
        base / "fed", say=lambda _m: None, settings={"timestamping_interval": 1}
    )
    w = World(fed, service, base)
    try:
        w.cli(
            w.aizu,
            "service",
            "add",
            "residents",
            "person",
            "--url",
            f"http://127.0.0.1:{service.port}/person",
            "--type",
            "rest",
        )
        for client in (w.taka, w.aizu):
            w.cli(w.aizu, "acl", "grant", "residents/person", client.client_id)
        policy = base / "aizu-policy.json"
        policy.write_text(json.dumps(policy_document(), ensure_ascii=False))
        w.cli(w.aizu, "policy", "import", policy, "--by", "aizu-privacy-officer")
        # services and rights are re-read every 2 s: wait until the grant is in force
        last: list[CallResult] = []

        def ready() -> bool:
            last[:] = [w.call(w.taka, "APPI69-1-LAW", "warm-up")[1]]
            return last[0].status == 200

        wait("the new service", ready, detail=lambda: last[0].body.decode())
        w.sent.clear()
        yield w
    finally:
        fed.stop()
        service.stop()


def error_of(result: CallResult) -> dict[str, Any]:
    return dict(json.loads(result.body))


def test_allowed_provision_then_refusal_after_consent_withdrawal(world: World) -> None:
    w = world
    calls = w.service.calls
    mid, result = w.call(w.taka, "CONSENT", "S-E2E", consent="CR-E2E")
    assert result.status == 200, result.body
    assert json.loads(result.body) == {"name": PERSON["name"], "address": PERSON["address"]}
    assert w.service.calls == calls + 1
    provided = w.cli_json(w.aizu, "records", "--subject", "S-E2E")["provisions"]
    assert [
        (p["message_id"], p["recipient"], p["data_items"], p["consent_id"]) for p in provided
    ] == [(mid, f"{TAKAMATSU}/portal", ["name", "address"], "CR-E2E")]
    received = w.cli_json(w.taka, "records", "--subject", "S-E2E")["receipts"]
    assert [
        (
            r["message_id"],
            r["provider_name"],
            r["provider_representative"],
            r["acquisition_circumstances"],
            r["consent_fact"],
        )
        for r in received
    ] == [(mid, "会津若松市", "会津若松市長", "住民基本台帳法に基づき取得", True)]

    w.cli(w.aizu, "consent", "withdraw", "CR-E2E", "--by", "窓口担当")
    refused_mid, refused = w.call(w.taka, "CONSENT", "S-E2E", consent="CR-E2E")
    error = error_of(refused)
    assert (refused.status, error["type"], error["detail"]) == (
        500,
        "Server.ServerProxy.AccessDenied",
        "CONSENT_NOT_VALID",
    )
    assert "policy: CONSENT_NOT_VALID" in error["message"]
    assert w.service.calls == calls + 1  # never called
    assert len(w.cli_json(w.aizu, "records", "--subject", "S-E2E")["provisions"]) == 1

    # both decisions are in the decision log and named by the verified message log
    allow = w.cli_json(w.aizu, "policy", "log", "--message-id", mid)
    deny = w.cli_json(w.aizu, "policy", "log", "--message-id", refused_mid)
    assert [(d["decision"], d["reason"]) for d in allow] == [("ALLOW", "OK_CONSENT")]
    assert [(d["decision"], d["reason"]) for d in deny] == [("DENY", "CONSENT_NOT_VALID")]
    assert deny[0]["entry_sha256"] in error["message"]
    for node in (w.aizu, w.taka):
        verified = wait(f"{node.name}'s log verified", lambda n=node: verify(w, n))
        assert verified["ok"] is True
    logged = {r["direction"]: r for r in w.cli_json(w.aizu, "log", "search", "--message-id", mid)}
    assert f"decision sha256:{allow[0]['entry_sha256']}" in logged["request_in"]["reason"]
    assert "OK_CONSENT" in logged["request_in"]["reason"]
    [refusal] = w.cli_json(w.aizu, "log", "search", "--message-id", refused_mid)
    assert refusal["direction"] == "refusal" and "CONSENT_NOT_VALID" in refusal["reason"]
    assert deny[0]["entry_sha256"] in refusal["reason"]
    client_side = {
        r["direction"]: r for r in w.cli_json(w.taka, "log", "search", "--message-id", mid)
    }
    assert (
        client_side["response_in"]["reason"]
        == f"policy statement sha256:{received[0]['statement_sha256']}"
    )


def verify(w: World, node: NodeHandle) -> dict[str, Any] | None:
    try:
        result = w.fed.run("secnode", "log", "verify", "--dir", node.dir, "--json")
    except DemoError:
        return None  # not yet stamped
    report = json.loads(result)
    return report if report.get("ok") else None


def test_client_node_refuses_what_it_already_knows_is_missing(world: World) -> None:
    w = world
    doc = policy_document()
    copy = {k: doc[k] for k in ("format", "format_version", "purposes", "services")}
    path = w.tmp / "takamatsu-copy.json"
    path.write_text(json.dumps(copy, ensure_ascii=False))
    w.cli(w.taka, "policy", "import", path)
    time.sleep(1.2)  # the client side re-reads its copy at most once a second
    calls = w.service.calls
    before = len(w.cli_json(w.aizu, "policy", "log"))
    _, result = w.call(w.taka, "APPI69-1-LAW", "L-9", purpose=None)
    error = error_of(result)
    assert (error["type"], error["detail"]) == (
        "Server.ClientProxy.AccessDenied",
        "MISSING_PURPOSE",
    )
    assert w.service.calls == calls and len(w.cli_json(w.aizu, "policy", "log")) == before
    assert (
        w.cli_json(w.taka, "policy", "log", "--side", "client")[-1]["reason"] == "MISSING_PURPOSE"
    )
    w.sent.clear()  # not a provider decision: not in the provider's report


def test_transparency_report_matches_a_scripted_run(world: World) -> None:
    w = world
    before = {(r["basis"], r["recipient"]): r for r in report(w, 1)["rows"]}
    w.sent.clear()
    script = [
        (w.taka, "APPI69-1-LAW", "L-1", "name,address"),
        (w.taka, "APPI69-1-LAW", "L-2", "name"),
        (w.taka, "APPI69-1-LAW", "L-2", "name,income"),  # field not agreed: refused
        (w.aizu, "APPI69-1-LAW", "L-3", "address"),
        (w.aizu, "APPI69-1-LAW", "L-4", "name,address"),
        (w.taka, "CONSENT", "S-E2E", "name"),
    ]  # consent withdrawn: refused
    for via, basis, subject, items in script:
        w.call(via, basis, subject, items=items, consent="CR-E2E" if basis == "CONSENT" else None)
    assert w.sent == Counter(
        {
            ("APPI69-1-LAW", TAKAMATSU, "provisions"): 2,
            ("APPI69-1-LAW", TAKAMATSU, "refused"): 1,
            ("APPI69-1-LAW", AIZU, "provisions"): 2,
            ("CONSENT", TAKAMATSU, "refused"): 1,
        }
    )
    after = report(w, 1)
    for (basis, recipient, column), count in w.sent.items():
        row = next(r for r in after["rows"] if (r["basis"], r["recipient"]) == (basis, recipient))
        old = before.get((basis, recipient), {}).get(column, 0)
        assert row[column] - old == count, (basis, recipient, column)
    names = {r["recipient"]: r["recipient_name"] for r in after["rows"]}
    assert names[TAKAMATSU] == "高松市" and names[AIZU] == "会津若松市"
    published = report(w, None)  # default threshold: small subject counts are hidden
    assert all(r["subjects_suppressed"] for r in published["rows"] if r["provisions"])
    assert published["total"]["subjects"] is None


def report(w: World, suppress_below: int | None) -> dict[str, Any]:
    year = fiscal_year_of(dt.datetime.now(dt.UTC))
    args: list[str | Path] = [
        "report",
        "transparency",
        "--fiscal-year",
        str(year),
        "--format",
        "json",
    ]
    if suppress_below is not None:
        args += ["--suppress-below", str(suppress_below)]
    return dict(json.loads(w.cli(w.aizu, *args)))
