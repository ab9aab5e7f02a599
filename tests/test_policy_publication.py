"""Issue 17 items 7 and 8: a transparency report a city can publish as is, with the receiving
units a city lists (police stations under their prefectural police), checked against a
realistic year driven through real nodes.

The year: Kakogawa's node provides camera images under its camera ordinance. Two prefectural
police members, each on its own node, send several hundred criminal-investigation requests
from seven stations (plus a few emergency requests and a handful that are refused); the
city's report, grouped by unit, must show exactly what was sent, row by row, with the total
per reason and the grand total. The HTML form is parsed with lxml.html.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import lxml.html
import pytest
from aiohttp import web

from secnode.core.policy import JST, build_transparency_report, fiscal_year_of
from secnode.core.policy.report_render import render_html
from secnode.demo.calls import http
from tests.conftest import free_port
from tests.support.federation import NodeHandle, create

CITY = "JP/GOV/282103"
HYOGO = "JP/GOV/HYOGO-POLICE"
OSAKA = "JP/GOV/OSAKA-POLICE"
SERVICE = f"{CITY}/camera/images"
UNITS: dict[str, dict[str, str]] = {
    HYOGO: {
        "kakogawa-st": "加古川警察署",
        "takasago-st": "高砂警察署",
        "akashi-st": "明石警察署",
        "himeji-st": "姫路警察署",
    },
    OSAKA: {"sakai-st": "堺警察署", "naniwa-st": "浪速警察署", "kita-st": "北警察署"},
}
# criminal-investigation provisions per station: a few hundred in all, all counts different
PROVISIONS = {
    f"{HYOGO}/kakogawa-st": 96,
    f"{HYOGO}/takasago-st": 61,
    f"{HYOGO}/akashi-st": 44,
    f"{HYOGO}/himeji-st": 23,
    f"{OSAKA}/sakai-st": 52,
    f"{OSAKA}/naniwa-st": 31,
    f"{OSAKA}/kita-st": 9,
}
EMERGENCY = {f"{HYOGO}/kakogawa-st": 2, f"{OSAKA}/kita-st": 1}
REFUSED = {  # criminal-investigation requests the city refuses (wrong document, too old)
    f"{HYOGO}/takasago-st": 2,
    f"{OSAKA}/sakai-st": 1,
    f"{OSAKA}/kita-st": 2,
}
CONTACT = "加古川市 市民部 地域安全課 見守りカメラ担当 079-000-0000"
ORD = "加古川市見守りカメラの設置及び運用に関する条例"


def policy_document() -> dict[str, Any]:
    members: list[dict[str, Any]] = [
        {
            "id": CITY,
            "legal_type": "PUBLIC_BODY",
            "name": "加古川市",
            "address": "兵庫県加古川市加古川町北在家2000",
            "representative": "加古川市長",
        },
        {
            "id": HYOGO,
            "legal_type": "INVESTIGATIVE_AGENCY",
            "name": "兵庫県警察",
            "units": [{"subsystem": k, "name": v} for k, v in UNITS[HYOGO].items()],
        },
        {
            "id": OSAKA,
            "legal_type": "INVESTIGATIVE_AGENCY",
            "name": "大阪府警察",
            "units": [{"subsystem": k, "name": v} for k, v in UNITS[OSAKA].items()],
        },
    ]
    return {
        "format": "secnode-policy",
        "format_version": 1,
        "policy_version": "kakogawa-fy",
        "members": members,
        "ordinance_bases": [
            {
                "code": "ORD-CRIMINAL-INVESTIGATION",
                "kind": "CRIMINAL_INVESTIGATION",
                "ordinance": ORD,
                "article": "加古川市見守りカメラ条例 (捜査機関からの要請)",
                "label_ja": "捜査機関からの犯罪捜査のための要請",
                "label_en": "Criminal investigation on request",
                "appi_basis": "APPI69-1-LAW",
            },
            {
                "code": "ORD-EMERGENCY",
                "kind": "EMERGENCY",
                "ordinance": ORD,
                "article": "加古川市見守りカメラ条例 (生命・身体の保護)",
                "label_ja": "人の生命・身体の保護のため緊急",
                "label_en": "Emergency for life or body",
                "appi_basis": "APPI69-2-4",
            },
        ],
        "purposes": [
            {"code": "CRIME-INVESTIGATION", "label_ja": "犯罪捜査", "label_en": "Investigation"},
            {"code": "EMERGENCY-RESPONSE", "label_ja": "緊急対応", "label_en": "Emergency"},
        ],
        "exception_profiles": [
            {
                "id": "EP-CAMERA",
                "reasons": [
                    {
                        "basis": "ORD-CRIMINAL-INVESTIGATION",
                        "eligible_recipient_types": ["INVESTIGATIVE_AGENCY"],
                        "required_evidence": ["doc_type", "doc_no", "statute", "offence"],
                        "accepted_doc_types": ["捜査関係事項照会書"],
                    },
                    {
                        "basis": "ORD-EMERGENCY",
                        "eligible_recipient_types": ["INVESTIGATIVE_AGENCY"],
                        "required_evidence": ["ref"],
                    },
                ],
                "fields": ["image", "camera_id", "captured_at"],
                "max_lookback": "P14D",
                "notify": ["camera-officer@city.kakogawa.example"],
            }
        ],
        "services": [
            {
                "id": SERVICE,
                "title": "見守りカメラ画像",
                "fields": [
                    {"name": "image", "class": "PERSONAL"},
                    {"name": "camera_id", "class": "NON_PERSONAL"},
                    {"name": "captured_at", "class": "NON_PERSONAL"},
                ],
                "subject_required": False,
                "exception_profiles": ["EP-CAMERA"],
            }
        ],
    }


# -- item 7: the published page ---------------------------------------------------------------


def _entries() -> list[dict[str, Any]]:
    t = "2026-07-01T10:00:00+09:00"
    out: list[dict[str, Any]] = []
    for client, n in PROVISIONS.items():
        member = client.rsplit("/", 1)[0]
        out += [
            {
                "ts": t,
                "allow": True,
                "basis": "ORD-CRIMINAL-INVESTIGATION",
                "reason": "OK",
                "recipient": member,
                "client": client,
            }
        ] * n
    out += [  # a consent flow with few subjects: its subject count must be suppressed
        {
            "ts": t,
            "allow": True,
            "basis": "CONSENT",
            "reason": "OK_CONSENT",
            "recipient": "JP/COM/BIZ-X",
            "client": "JP/COM/BIZ-X/app",
            "subject_ref": f"S{i % 3}",
        }
        for i in range(12)
    ]
    return out


def published_page(**changes: Any) -> lxml.html.HtmlElement:
    units = {f"{m}/{c}": n for m, us in UNITS.items() for c, n in us.items()}
    report = build_transparency_report(
        _entries(),
        2026,
        recipient_names={HYOGO: "兵庫県警察", OSAKA: "大阪府警察", "JP/COM/BIZ-X": "株式会社X"},
        basis_labels={
            "ORD-CRIMINAL-INVESTIGATION": (
                "捜査機関からの犯罪捜査のための要請",
                "Criminal investigation on request",
            )
        },
        basis_articles={"ORD-CRIMINAL-INVESTIGATION": "APPI Art. 69(1) + 加古川市見守りカメラ条例"},
        group_by="unit",
        unit_names=units,
        publisher="加古川市",
        contact=CONTACT,
        published=dt.date(2027, 6, 30),
        **changes,
    )
    return lxml.html.fromstring(render_html(report))


def test_rows_by_unit_ordered_by_reason_then_count_with_reason_totals() -> None:
    units = {f"{m}/{c}": n for m, us in UNITS.items() for c, n in us.items()}
    refusal = {
        "ts": "2026-08-01T10:00:00+09:00",
        "allow": False,
        "basis": "ORD-CRIMINAL-INVESTIGATION",
        "reason": "EVIDENCE_REQUIRED",
        "recipient": OSAKA,
        "client": f"{OSAKA}/kita-st",
    }
    report = build_transparency_report(
        [*_entries(), refusal], 2026, group_by="unit", unit_names=units, suppress_below=2
    )
    crim = [r for r in report.rows if r.basis == "ORD-CRIMINAL-INVESTIGATION"]
    assert [(r.unit_name, r.provisions) for r in crim] == sorted(
        ((units[c], n) for c, n in PROVISIONS.items()), key=lambda x: -x[1]
    )
    assert report.rows[0].basis == "CONSENT"  # reasons in category order, ordinances after
    kita = next(r for r in crim if r.unit == f"{OSAKA}/kita-st")
    assert (kita.provisions, kita.refused, kita.recipient) == (9, 1, OSAKA)
    totals = {t.basis: t for t in report.reason_totals}
    assert (totals["ORD-CRIMINAL-INVESTIGATION"].provisions, totals["CONSENT"].provisions) == (
        sum(PROVISIONS.values()),
        12,
    )
    assert totals["ORD-CRIMINAL-INVESTIGATION"].refused == 1
    assert report.total_provisions == sum(PROVISIONS.values()) + 12
    unnamed = build_transparency_report(_entries(), 2026, group_by="unit")
    assert {r.unit_name for r in unnamed.rows} >= {"kakogawa-st", "app"}  # code, never the id


def test_published_page_names_city_period_date_and_contact() -> None:
    page = published_page()
    h1 = page.xpath("//h1")[0].text_content()
    assert h1.startswith("加古川市 ") and "令和8年度" in h1
    meta = dict(
        zip(
            [dt_.text_content() for dt_ in page.xpath("//dl[@class='meta']/dt")],
            [dd.text_content() for dd in page.xpath("//dl[@class='meta']/dd")],
            strict=True,
        )
    )
    assert meta["公表団体 Published by"] == "加古川市"
    assert meta["対象期間 Period"].startswith("2026年4月1日～2027年3月31日")
    assert meta["公表日 Date of publication"].startswith("2027年6月30日")
    assert meta["お問い合わせ先 Contact"] == CONTACT


def test_published_page_has_bilingual_reasons_and_no_internal_ids_or_notes() -> None:
    page = published_page()
    rows = page.xpath("//tbody/tr[not(@class)]")
    assert rows
    for row in rows:
        reason = row.xpath("td")[0].text_content()
        assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", reason)  # Japanese
        assert re.search(r"[A-Za-z]{4,}", reason)  # English
    text = page.text_content()
    for internal in ("JP/", "ORD-", "CONSENT", "HYOGO-POLICE", "kakogawa-st", "decision log"):
        assert internal not in text, internal
    assert "兵庫県警察" in text and "加古川警察署" in text


def test_published_page_states_suppression_consistently() -> None:
    page = published_page()
    consent = [r for r in page.xpath("//tbody/tr[not(@class)]") if "本人同意" in r.text_content()]
    assert [r.xpath("td")[4].text_content() for r in consent] == ["<5"]
    subtotals = {
        r.xpath("td")[0].text_content(): r.xpath("td")[2].text_content()
        for r in page.xpath("//tbody/tr[@class='subtotal']")
    }
    assert subtotals["小計 Subtotal: 本人同意 / Consent of the individual"] == "*"
    total = page.xpath("//tfoot/tr/td")
    assert total[2].text_content() == "*"  # never "<5", which would contradict the note
    note = " ".join(p.text_content() for p in page.xpath("//p[@class='note']"))
    assert '"<5"' in note and '"*"' in note
    # nothing suppressed: no "*" and no "<5" anywhere
    clean = published_page(suppress_below=2)
    assert "<5" not in clean.text_content() and clean.xpath("//tfoot/tr/td")[2].text_content()


def test_published_page_has_a_print_stylesheet_and_nothing_remote() -> None:
    page = published_page()
    style = " ".join(s.text_content() for s in page.xpath("//style"))
    assert "@media print" in style and "@page" in style
    assert not page.xpath("//script") and not page.xpath("//link") and not page.xpath("//img")


# -- item 8: a realistic year through real nodes ----------------------------------------------


class CameraService:
    """The city's camera system: answers with an image record, counts its calls."""

    def __init__(self) -> None:
        self.port = free_port()
        self.calls = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _image(self, request: web.Request) -> web.Response:
        self.calls += 1
        return web.json_response(
            {
                "image": "iVBORw0KGgo=",
                "camera_id": request.match_info["cam"],
                "captured_at": "2026-05-30T21:14:00+09:00",
                "operator_note": "internal",
            }
        )

    def start(self) -> None:
        app = web.Application()
        app.router.add_get("/images/{cam}", self._image)
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


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("kakogawa-year")
    camera = CameraService()
    camera.start()
    fed = create(base / "fed")
    try:
        city = fed.add_node("kakogawa", CITY, "Kakogawa City", subsystems=("camera",))
        police = {
            HYOGO: fed.add_node(
                "hyogo", HYOGO, "Hyogo Prefectural Police", subsystems=tuple(UNITS[HYOGO])
            ),
            OSAKA: fed.add_node(
                "osaka", OSAKA, "Osaka Prefectural Police", subsystems=tuple(UNITS[OSAKA])
            ),
        }
        fed.approve_all()
        fed.sync_all()
        city.cli(
            "service",
            "add",
            "camera",
            "images",
            "--url",
            f"http://127.0.0.1:{camera.port}/images",
            "--type",
            "rest",
        )
        for member, node in police.items():
            for unit in UNITS[member]:
                city.cli("acl", "grant", "camera/images", f"{member}/{unit}")
                node.cli("client", "allow", unit, "--address", "127.0.0.1")
        doc = base / "kakogawa-policy.json"
        doc.write_text(json.dumps(policy_document(), ensure_ascii=False))
        city.cli("policy", "import", doc, "--by", "kakogawa-privacy-officer")
        for name in ("kakogawa", "hyogo", "osaka"):
            fed.start_node(name)
        yield {"fed": fed, "city": city, "police": police, "camera": camera, "base": base}
    finally:
        fed.close()
        camera.stop()


def ask(
    node: NodeHandle,
    client: str,
    basis: str,
    *,
    doc_type: str = "捜査関係事項照会書",
    days_back: int = 2,
) -> int:
    since = dt.datetime.now(JST) - dt.timedelta(days=days_back)
    if basis == "ORD-EMERGENCY":
        evidence: dict[str, str] = {"ref": "110-緊急-0042"}
        purpose = "EMERGENCY-RESPONSE"
    else:
        evidence = {
            "doc_type": doc_type,
            "doc_no": "兵加捜第1号",
            "statute": "刑事訴訟法197条2項",
            "offence": "窃盗",
        }
        purpose = "CRIME-INVESTIGATION"
    headers = {
        "X-Road-Client": client,
        "X-Road-Id": str(uuid.uuid4()),
        "X-Road-UserId": "officer-1",
        "X-Road-Issue": f"CASE-{uuid.uuid4().hex[:8]}",
        "X-Road-Purpose": purpose,
        "X-Road-Legal-Basis": basis,
        "X-Road-Data-Items": "image,captured_at",
        "X-Road-Data-From": since.isoformat(timespec="seconds"),
        "X-Road-Evidence": json.dumps(evidence),  # \u escapes: headers are ASCII
    }
    result = http("GET", f"{node.client_url}/r1/{SERVICE}/CAM-07", None, headers)
    if result.status == 200:
        assert set(json.loads(result.body)) == {"image", "captured_at"}  # cut to the request
    return result.status


@pytest.mark.slow
def test_a_realistic_year_reports_exactly_what_was_sent(year: dict[str, Any]) -> None:
    police: dict[str, NodeHandle] = year["police"]
    sent: Counter[tuple[str, str, str]] = Counter()
    plan: list[tuple[str, str, str]] = []  # (client, basis, "ok" | "doc" | "old")
    for client, n in PROVISIONS.items():
        plan += [(client, "ORD-CRIMINAL-INVESTIGATION", "ok")] * n
    for client, n in EMERGENCY.items():
        plan += [(client, "ORD-EMERGENCY", "ok")] * n
    for i, (client, n) in enumerate(REFUSED.items()):
        plan += [(client, "ORD-CRIMINAL-INVESTIGATION", "doc" if i % 2 else "old")] * n
    for client, basis, kind in plan:
        node = police[client.rsplit("/", 1)[0]]
        status = ask(
            node,
            client,
            basis,
            doc_type="任意の依頼書" if kind == "doc" else "捜査関係事項照会書",
            days_back=20 if kind == "old" else 2,
        )
        assert (status == 200) == (kind == "ok"), (client, basis, kind, status)
        sent[(basis, client, "provisions" if kind == "ok" else "refused")] += 1
    city: NodeHandle = year["city"]
    assert year["camera"].calls == sum(PROVISIONS.values()) + sum(EMERGENCY.values())

    fy = fiscal_year_of(dt.datetime.now(dt.UTC))
    report = city.cli(
        "report", "transparency", "--fiscal-year", str(fy), "--by", "unit", "--format", "json"
    ).json()
    rows = report["rows"]
    got = Counter()
    for r in rows:
        got[(r["basis"], r["unit"], "provisions")] += r["provisions"]
        got[(r["basis"], r["unit"], "refused")] += r["refused"]
    assert +got == +sent
    names = {r["unit"]: (r["recipient_name"], r["unit_name"]) for r in rows}
    for member, units in UNITS.items():
        for code, name in units.items():
            assert names[f"{member}/{code}"] == (
                {HYOGO: "兵庫県警察", OSAKA: "大阪府警察"}[member],
                name,
            )
    # as a city orders them: by reason, then by count, most first
    crim = [r for r in rows if r["basis"] == "ORD-CRIMINAL-INVESTIGATION"]
    assert [r["provisions"] for r in crim] == sorted((r["provisions"] for r in crim), reverse=True)
    assert [r["basis"] for r in rows] == sorted(
        (r["basis"] for r in rows), key=lambda b: b != "ORD-CRIMINAL-INVESTIGATION"
    )
    totals = {t["basis"]: t for t in report["reason_totals"]}
    assert totals["ORD-CRIMINAL-INVESTIGATION"]["provisions"] == sum(PROVISIONS.values())
    assert totals["ORD-CRIMINAL-INVESTIGATION"]["refused"] == sum(REFUSED.values())
    assert totals["ORD-EMERGENCY"]["provisions"] == sum(EMERGENCY.values())
    assert report["total"]["provisions"] == sum(PROVISIONS.values()) + sum(EMERGENCY.values())
    assert report["total"]["refused"] == sum(REFUSED.values())
    assert crim[0]["article"] == "APPI Art. 69(1) + 加古川市見守りカメラ条例 (捜査機関からの要請)"

    # the page the city publishes: same numbers, names, no identifiers
    html_file = year["base"] / "fy.html"
    refused = city.cli(
        "report",
        "transparency",
        "--fiscal-year",
        str(fy),
        "--format",
        "html",
        "--by",
        "unit",
        check=False,
    )
    assert refused.exit_code != 0 and "--contact" in refused.output
    city.cli(
        "report",
        "transparency",
        "--fiscal-year",
        str(fy),
        "--format",
        "html",
        "--by",
        "unit",
        "--contact",
        CONTACT,
        "--out",
        html_file,
    )
    page = lxml.html.fromstring(html_file.read_text(encoding="utf-8"))
    assert page.xpath("//h1")[0].text_content().startswith("加古川市 ")
    body = page.xpath("//tbody/tr[not(@class)]")
    assert len(body) == len(rows)
    for tr, r in zip(body, rows, strict=True):
        cells = [td.text_content() for td in tr.xpath("td")]
        assert cells[1:4] == [r["recipient_name"], r["unit_name"], str(r["provisions"])]
        assert cells[5] == str(r["refused"])
    foot = [td.text_content() for td in page.xpath("//tfoot/tr/td")]
    assert foot[1] == str(report["total"]["provisions"]) and foot[3] == str(sum(REFUSED.values()))
    assert "JP/" not in page.text_content() and "ORD-" not in page.text_content()
