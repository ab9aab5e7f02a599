"""The demo's mission: a resident's data between two cities, lawfully and provably.

After the X-Road sample calls, ``secnode demo`` shows what the node is for: Aizu
provides a resident's record to Takamatsu under an agreement with the resident's
consent (cut to the agreed fields), refuses the same request once the consent is
withdrawn (the provider system is never called), provides under an emergency
exception with evidence, and then everything a privacy officer, the resident and
an auditor would look at: the provision and receipt records, the resident's
disclosure, ``log verify`` and ``log reconcile`` of both cities and the yearly
transparency report as HTML in the demo directory.

It drives the running federation only from outside, as an operator and an
information system would: the demo directory (``demo.json``, each component's
directory, the passphrase file), HTTP calls to the client nodes' interfaces, and
the ``secnode`` CLI run as subprocesses. So each step is also a worked example of
docs/policy.md. Each step prints one or two lines and raises :class:`MissionError`
when it does not show what it should; :func:`run_mission` says whether all did.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

from secnode.core.policy import fiscal_year_of
from secnode.demo.calls import CallResult, http
from secnode.demo.services import RESIDENTS

SUBJECT = "S-DEMO-1001"
"""The resident's pairwise pseudonym (the node never stores names)."""
RESIDENT = "1001"
CONSENT_ID = "CR-DEMO-1"
AGREEMENT_ID = "DSA-DEMO-1"
PURPOSE = "WELFARE-ELIGIBILITY"
EMERGENCY_PURPOSE = "EMERGENCY-SAFETY"
EMERGENCY_BASIS = "ORD-EMERGENCY"
SUBSYSTEM, SERVICE = "residents", "person"
AGREED_FIELDS = ("name", "address")
EMERGENCY_FIELDS = ("name", "address", "household")
RECIPIENT_UNIT = "高松市 福祉窓口システム"
"""Takamatsu's client subsystem as the report names it (``--by unit``)."""
CONTACT = "会津若松市 総務課 個人情報保護担当 (demo)"
CLI_TIMEOUT = 120.0


class MissionError(Exception):
    """A step did not show what it should; the message says what was seen instead."""


@dataclass(frozen=True)
class City:
    """One node as ``demo.json`` describes it."""

    name: str
    member: str
    dir: Path
    client_url: str
    client: str
    disclosure_url: str
    tls_cert: Path

    @property
    def title(self) -> str:
        return self.name.capitalize()


@dataclass
class Mission:
    """The running demo federation, seen from outside; the steps are its methods."""

    base: Path
    provider: City
    recipient: City
    service_base: str
    """The sample provider system (``secnode.demo.services``), for its call counter."""
    passphrase: str
    allowed: dict[str, str] = field(default_factory=dict)
    """Step name -> message id of each allowed provision."""

    @classmethod
    def load(cls, base: Path) -> Mission:
        manifest = json.loads((base / "demo.json").read_text())
        cities = {
            name: City(
                name,
                n["member"],
                Path(n["dir"]),
                n["client_url"],
                n["client"],
                n["disclosure_url"],
                Path(n["tls_cert"]),
            )
            for name, n in manifest["nodes"].items()
        }
        passphrase = Path(manifest["passphrase_file"]).read_text().strip()
        service_base = f"http://127.0.0.1:{manifest['ports']['rest_service']}"
        return cls(base, cities["aizu"], cities["takamatsu"], service_base, passphrase)

    @property
    def service_id(self) -> str:
        return f"{self.provider.member}/{SUBSYSTEM}/{SERVICE}"

    # ----- the outside surface: the CLI and the client interface ------------------------------
    def cli(self, city: City | None, *args: str | Path, check: bool = True) -> str:
        """``secnode ARGS [--dir CITY]`` as an operator runs it; its standard output."""
        env = {k: v for k, v in os.environ.items() if k not in ("SECNODE_DIR", "CENTRAL_DIR")}
        env["SECNODE_PASSPHRASE"] = self.passphrase
        argv = [sys.executable, "-m", "secnode", *(str(a) for a in args)]
        if city is not None:
            argv += ["--dir", str(city.dir)]
        try:
            done = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise MissionError(f"'secnode {' '.join(argv[3:])}' did not finish") from exc
        if check and done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            command = " ".join(str(a) for a in args[:2])
            raise MissionError(f"'secnode {command}' failed: {' / '.join(said[-3:])}")
        return done.stdout

    def cli_json(self, city: City, *args: str | Path) -> Any:
        return json.loads(self.cli(city, *args, "--json"))

    def call(
        self, basis: str, items: tuple[str, ...], purpose: str, **policy: str
    ) -> tuple[str, CallResult]:
        """Takamatsu's information system asks for the resident's record via its node."""
        mid = str(uuid.uuid4())
        headers = {
            "X-Road-Client": self.recipient.client,
            "X-Road-Id": mid,
            "X-Road-UserId": "takamatsu-clerk-7",
            "X-Road-Issue": "TKM-WEL-2026-0042",
            "X-Road-Purpose": purpose,
            "X-Road-Legal-Basis": basis,
            "X-Road-Data-Subject": SUBJECT,
            "X-Road-Data-Items": ",".join(items),
            **policy,
        }
        url = f"{self.recipient.client_url}/r1/{self.service_id}/{RESIDENT}"
        return mid, http("GET", url, None, headers)

    def service_calls(self) -> int:
        """How often the provider system was actually called."""
        result = http("GET", f"{self.service_base}/person-calls")
        return int(json.loads(result.body)["calls"])

    def decision(self, mid: str) -> dict[str, Any]:
        """Aizu's provider-side decision for one message (``policy log``)."""
        rows = self.cli_json(self.provider, "policy", "log", "--message-id", mid)
        mine = [r for r in rows if r.get("side", "provider") == "provider"]
        if len(mine) != 1:
            raise MissionError(f"expected one provider decision for {mid}, found {len(mine)}")
        return dict(mine[0])

    # ----- the steps ---------------------------------------------------------------------------
    def set_up(self) -> list[str]:
        """Aizu's privacy officer: the service, its classification, agreement and consent."""
        p, r = self.provider, self.recipient
        url = f"{self.service_base}/{SERVICE}"
        self.cli(p, "service", "add", SUBSYSTEM, SERVICE, "--url", url, "--type", "rest")
        self.cli(p, "acl", "grant", f"{SUBSYSTEM}/{SERVICE}", r.client)
        policy_dir = self.base / "mission"
        policy_dir.mkdir(exist_ok=True)
        docs = {
            "policy.json": policy_document(p.member, r.client, self.service_id),
            "agreement.json": agreement_document(p.member, r.client, self.service_id),
            "consent.json": consent_document(p.member, r.client, self.service_id),
        }
        for name, doc in docs.items():
            (policy_dir / name).write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
        by = ("--by", "会津若松市 個人情報保護担当")
        self.cli(p, "policy", "import", policy_dir / "policy.json", *by)
        self.cli(p, "agreement", "add", policy_dir / "agreement.json", *by)
        self.cli(p, "consent", "add", policy_dir / "consent.json", *by)
        self.wait_granted()
        return [
            f"Aizu: service {SUBSYSTEM}/{SERVICE} (5 personal fields), agreement {AGREEMENT_ID} "
            f"(consent; {', '.join(AGREED_FIELDS)}), consent {CONSENT_ID} of resident {SUBJECT}, "
            f"emergency exception {EMERGENCY_BASIS}",
            f"documents in {policy_dir} (secnode policy import / agreement add / consent add)",
        ]

    def wait_granted(self, timeout: float = 30) -> None:
        """Nodes re-read services and access rights every few seconds: wait for the grant."""
        url = f"{self.recipient.client_url}/r1/{self.provider.member}/{SUBSYSTEM}/allowedMethods"
        headers = {"X-Road-Client": self.recipient.client, "Accept": "application/json"}
        deadline = time.monotonic() + timeout
        while True:
            result = http("GET", url, None, headers)
            if result.status == 200:
                codes = {s.get("service_code") for s in json.loads(result.body)["service"]}
                if SERVICE in codes:
                    return
            if time.monotonic() > deadline:
                raise MissionError(f"{self.service_id} not granted to {self.recipient.client}")
            time.sleep(0.3)

    def consent_allowed(self) -> list[str]:
        before = self.service_calls()
        mid, result = self.call(
            "CONSENT", AGREED_FIELDS, PURPOSE, **{"X-Road-Consent-Id": CONSENT_ID}
        )
        if result.status != 200:
            raise MissionError(f"HTTP {result.status}: {result.body[:200]!r}")
        released = list(json.loads(result.body))
        if set(released) != set(AGREED_FIELDS) or self.service_calls() != before + 1:
            raise MissionError(f"released {released}, expected {list(AGREED_FIELDS)}")
        self.allowed["consent"] = mid
        decision = self.decision(mid)
        return [
            f"Takamatsu -> Aizu {SUBSYSTEM}/{SERVICE}/{RESIDENT}, basis CONSENT ({CONSENT_ID}): "
            f"HTTP 200, {decision['decision']} {decision['reason']} ({decision['article']})",
            f"the system answered {', '.join(RESIDENTS[RESIDENT])}; "
            f"the node released only {', '.join(released)} (agreement {AGREEMENT_ID})",
        ]

    def consent_withdrawn(self) -> list[str]:
        self.cli(self.provider, "consent", "withdraw", CONSENT_ID, "--by", "会津若松市 窓口担当")
        before = self.service_calls()
        mid, result = self.call(
            "CONSENT", AGREED_FIELDS, PURPOSE, **{"X-Road-Consent-Id": CONSENT_ID}
        )
        try:
            error = json.loads(result.body)
        except ValueError:
            error = {}
        detail = error.get("detail") if isinstance(error, dict) else None
        calls = self.service_calls() - before
        if result.status == 200 or detail != "CONSENT_NOT_VALID" or calls:
            raise MissionError(f"HTTP {result.status} {detail}, provider system called {calls}x")
        decision = self.decision(mid)
        return [
            f"secnode consent withdraw {CONSENT_ID}; the same request: HTTP {result.status} "
            f"{error.get('type')} {detail}",
            f"Aizu logged {decision['decision']} {decision['reason']} ({decision['article']}); "
            "the provider system was not called (its call counter did not move)",
        ]

    def exception(self) -> list[str]:
        evidence = {"ref": "AIZU-FIRE-2026-0815", "officer": "Aizu-Wakamatsu fire dept."}
        mid, result = self.call(
            EMERGENCY_BASIS,
            EMERGENCY_FIELDS,
            EMERGENCY_PURPOSE,
            **{"X-Road-Evidence": json.dumps(evidence)},
        )
        if result.status != 200:
            raise MissionError(f"HTTP {result.status}: {result.body[:200]!r}")
        released = list(json.loads(result.body))
        decision = self.decision(mid)
        kinds = {str(o) for o in decision.get("obligations") or []}
        review = sorted(kinds & {"NOTIFY_PRIVACY_OFFICER", "POST_REVIEW"})
        if set(released) != set(EMERGENCY_FIELDS) or decision["reason"] != "OK_EXCEPTION":
            raise MissionError(f"released {released}, decided {decision['reason']}")
        self.allowed["exception"] = mid
        return [
            f"{EMERGENCY_BASIS} (no consent needed) with evidence ref={evidence['ref']}: "
            f"HTTP 200, {decision['reason']} ({decision['article']})",
            f"released {', '.join(released)}; obligations {', '.join(review)}",
        ]

    def records(self) -> list[str]:
        if not self.allowed:
            raise MissionError("no provision was allowed, so there is no record to show")
        provided = self.cli_json(self.provider, "records", "--subject", SUBJECT)["provisions"]
        received = self.cli_json(self.recipient, "records", "--subject", SUBJECT)["receipts"]
        want = set(self.allowed.values())
        if {p["message_id"] for p in provided} != want or {
            r["message_id"] for r in received
        } != want:
            raise MissionError(
                f"{len(provided)} provision and {len(received)} receipt record(s) "
                f"for {len(want)} allowed request(s)"
            )
        kinds = ", ".join(f"{p['basis']}/{p.get('record_type')}" for p in provided)
        origin = received[0].get("provider_name")
        return [
            f"Aizu provision records (Art. 29): {len(provided)} ({kinds}) "
            f"to {self.recipient.client}",
            f"Takamatsu receipt records (Art. 30): {len(received)} from {origin}, "
            "the same message ids",
        ]

    def disclosure(self) -> list[str]:
        """What the resident is shown: by the city (CLI) and on the disclosure page."""
        text = self.cli(self.provider, "records", "--subject", SUBJECT)
        first = text.splitlines()[0] if text else ""
        expected = f"subject {SUBJECT}: {len(self.allowed)} provision(s)"
        if not first.startswith(expected):
            raise MissionError(f"'secnode records --subject {SUBJECT}' said {first!r}")
        code = self.cli_json(self.provider, "records", "access-code", "--subject", SUBJECT)
        page = resident_page(self.provider, SUBJECT, str(code["code"]))
        shown = page.count('class="provision"')
        if shown != len(self.allowed) or "高松市" not in page:
            raise MissionError(f"the disclosure page shows {shown} provision(s)")
        return [
            f"secnode records --subject {SUBJECT} (Aizu): "
            + first.removeprefix(f"subject {SUBJECT}: ")
            + " (the refused request is not a provision)",
            f"with a one-time code (secnode records access-code) the resident sees the same "
            f"{shown} provision(s) at {self.provider.disclosure_url}",
        ]

    def verify(self) -> list[str]:
        lines = []
        for city in (self.provider, self.recipient):
            out = self.cli(city, "log", "verify", check=False)
            verdict = next((ln for ln in out.splitlines() if ln.startswith("OK:")), None)
            if verdict is None:
                raise MissionError(f"{city.title}'s message log does not verify: {out[-300:]}")
            lines.append(f"{city.title}: {verdict}")
        return lines

    def reconcile(self, attempts: int = 5) -> list[str]:
        for attempt in range(attempts):
            out = self.cli(
                None, "log", "reconcile", self.provider.dir, self.recipient.dir, "--json",
                check=False,
            )  # fmt: skip
            report = json.loads(out) if out.strip().startswith("{") else {}
            if report.get("ok"):
                return [
                    f"secnode log reconcile aizu takamatsu: {report['exchanges_compared']} "
                    f"exchange(s), {report['witnesses_checked']} witnessed position(s): "
                    "the two logs agree"
                ]
            if attempt < attempts - 1:
                time.sleep(1)  # a record of the last exchange may still be on its way
        findings = [f.get("message") for f in report.get("findings", [])][:2]
        raise MissionError(f"the two logs do not reconcile: {findings or out[-300:]}")

    def report(self) -> list[str]:
        year = fiscal_year_of(dt.datetime.now(dt.UTC))
        out = self.base / f"transparency-aizu-FY{year}.html"
        args = ("report", "transparency", "--fiscal-year", str(year), "--by", "unit")
        self.cli(self.provider, *args, "--format", "html", "--contact", CONTACT, "--out", out)
        rows = json.loads(self.cli(self.provider, *args, "--format", "json"))
        html = out.read_text(encoding="utf-8") if out.exists() else ""
        ours = [r for r in rows["rows"] if r.get("recipient") == self.recipient.member]
        provisions = sum(int(r.get("provisions") or 0) for r in ours)
        refused = sum(int(r.get("refused") or 0) for r in ours)
        if provisions < len(self.allowed) or not refused or RECIPIENT_UNIT not in html:
            raise MissionError(f"{out.name}: {provisions} provision(s), {refused} refused")
        return [
            f"{out} (HTML, as a city publishes it): FY{year}, "
            f"to 高松市 ({RECIPIENT_UNIT}) {provisions} provision(s), {refused} refused",
        ]


STEPS: tuple[tuple[str, Callable[[Mission], list[str]]], ...] = (
    ("policy", Mission.set_up),
    ("consent", Mission.consent_allowed),
    ("withdrawn", Mission.consent_withdrawn),
    ("exception", Mission.exception),
    ("records", Mission.records),
    ("disclosure", Mission.disclosure),
    ("log verify", Mission.verify),
    ("log reconcile", Mission.reconcile),
    ("report", Mission.report),
)


def run_mission(base: Path, say: Callable[[str], None] = print) -> bool:
    """Run every step against the federation in ``base``; True when each showed its point."""
    say("\nThe mission: a resident's data between the two cities (docs/policy.md):")
    try:
        mission = Mission.load(base)
    except (OSError, KeyError, ValueError) as exc:
        say(f"  [FAIL] {base / 'demo.json'} cannot be read: {exc}")
        return False
    ok = True
    for name, step in STEPS:
        try:
            lines = step(mission)
        except Exception as exc:  # a demo step reports what went wrong, never a traceback
            say(f"  [FAIL] {name}: {exc if isinstance(exc, MissionError) else repr(exc)}")
            ok = False
            if name == "policy":
                return False  # nothing else can show anything
            continue
        say(f"  [OK  ] {name}: {lines[0]}")
        for line in lines[1:]:
            say(f"         {line}")
    return ok


def resident_page(city: City, subject: str, code: str) -> str:
    """Open the disclosure page as the resident's browser does: form, code, records page."""
    context = ssl.create_default_context(cafile=str(city.tls_cert))
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context),
        urllib.request.HTTPCookieProcessor(CookieJar()),
    )
    with opener.open(city.disclosure_url, timeout=30) as resp:
        form = resp.read().decode("utf-8")
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    if token is None:
        raise MissionError("the disclosure page has no login form")
    data = urllib.parse.urlencode({"csrf": token.group(1), "subject": subject, "code": code})
    with opener.open(city.disclosure_url, data.encode(), timeout=30) as resp:  # -> /records
        if not resp.geturl().endswith("/records"):
            raise MissionError(f"the disclosure page did not accept the code ({resp.geturl()})")
        return str(resp.read().decode("utf-8"))


# ----- the policy documents (docs/policy.md sections 2-5) --------------------------------------
def policy_document(provider: str, client: str, service: str) -> dict[str, Any]:
    """Aizu's registry: both cities, two purposes, an emergency ordinance, the service."""
    recipient, unit = client.rsplit("/", 1)
    fields = [{"name": n, "class": "PERSONAL"} for n in RESIDENTS[RESIDENT]]
    return {
        "format": "secnode-policy",
        "format_version": 1,
        "policy_version": "demo-mission-1",
        "members": [
            _city(provider, "会津若松市", "福島県会津若松市東栄町3-46", "会津若松市長"),
            {
                **_city(recipient, "高松市", "香川県高松市番町1-8-15", "高松市長"),
                "units": [{"subsystem": unit, "name": RECIPIENT_UNIT}],
            },
        ],
        "ordinance_bases": [
            {
                "code": EMERGENCY_BASIS,
                "kind": "EMERGENCY",
                "ordinance": "会津若松市個人情報保護法施行条例 (demo)",
                "article": "会津若松市個人情報保護法施行条例 (demo) 緊急時の提供",
                "label_ja": "生命・身体の保護のための緊急の提供",
                "label_en": "Emergency for life or body",
                "appi_basis": "APPI69-2-4",
            }
        ],
        "purposes": [
            {"code": PURPOSE, "label_ja": "福祉の受給資格確認", "label_en": "Welfare eligibility"},
            {
                "code": EMERGENCY_PURPOSE,
                "label_ja": "災害・救急時の安否確認",
                "label_en": "Safety check in an emergency",
            },
        ],
        "exception_profiles": [
            {
                "id": "EP-DEMO-EMERGENCY",
                "title": "緊急時の住民情報提供",
                "reasons": [
                    {
                        "basis": EMERGENCY_BASIS,
                        "eligible_recipient_types": ["PUBLIC_BODY"],
                        "required_evidence": ["ref"],
                    }
                ],
                "fields": list(EMERGENCY_FIELDS),
                "allowed_countries": ["JP"],
                "post_review": True,
                "notify": ["privacy-officer@aizu.example"],
            }
        ],
        "services": [
            {
                "id": service,
                "title": "住民情報 (demo)",
                "fields": fields,
                "registered_purposes": [PURPOSE],
                "subject_required": True,
                "acquisition_circumstances": "住民基本台帳法に基づき取得",
                "exception_profiles": ["EP-DEMO-EMERGENCY"],
            }
        ],
    }


def _city(member: str, name: str, address: str, representative: str) -> dict[str, str]:
    return {
        "id": member,
        "legal_type": "PUBLIC_BODY",
        "name": name,
        "address": address,
        "representative": representative,
    }


def agreement_document(provider: str, client: str, service: str) -> dict[str, Any]:
    """Takamatsu's portal may receive name and address, with the resident's consent."""
    return {
        "uid": AGREEMENT_ID,
        "version": 1,
        "title": "福祉の受給資格確認のための照会 (本人同意)",
        "type": "PROVISION",
        "state": "ACTIVE",
        "assigner": provider,
        "assignee": [client],
        "valid_from": "2025-04-01",
        "valid_to": "2031-03-31",
        "permission": [
            {
                "target": service,
                "action": "use",
                "constraint": [
                    {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": [PURPOSE]},
                    {
                        "leftOperand": "legalBasis",
                        "operator": "isAnyOf",
                        "rightOperand": ["CONSENT"],
                    },
                    {
                        "leftOperand": "dataItem",
                        "operator": "isPartOf",
                        "rightOperand": list(AGREED_FIELDS),
                    },
                ],
            }
        ],
    }


def consent_document(controller: str, client: str, service: str) -> dict[str, Any]:
    """The resident agreed that Takamatsu may receive the data for this purpose."""
    return {
        "consent_id": CONSENT_ID,
        "subject_ref": SUBJECT,
        "controller": controller,
        "recipients": [client],
        "services": [service],
        "purposes": [PURPOSE],
        "status": "ConsentGiven",
        "given_at": "2025-04-01T09:00:00+09:00",
        "expires_at": "2031-03-31T00:00:00+09:00",
        "collection_method": "ELECTRONIC",
    }
