"""The resident disclosure page on the provider node's own HTTPS listener: one-time access
codes (``secnode records access-code``), hashed at rest, expiring, spent by use, void after
wrong guesses, rate-limited; the page shows exactly the holder's records and answers the
same, byte for byte, for an unknown subject and a wrong code; requests are only recorded."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from secnode.console import audit, disclosure, tables
from secnode.home import NodeHome
from tests.support.console import Browser, ConsoleFederation, build, seed_provision

pytestmark = pytest.mark.slow
TAKA_PORTAL, BIZ = "JP/GOV/372013/portal", "JP/GOV/282103/app"
EXAMPLE_POLICY = Path(__file__).resolve().parent.parent / "examples" / "policy" / "city-a.json"


@pytest.fixture(scope="module")
def cf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleFederation]:
    made = build(tmp_path_factory.mktemp("disclosure"))
    aizu = made.aizu.handle.dir
    made.aizu.handle.cli("policy", "import", EXAMPLE_POLICY, "--by", "test")  # labels, consent CR-1
    seed_provision(aizu, "S-ALICE", TAKA_PORTAL, ["name", "address"], basis="CONSENT")
    seed_provision(aizu, "S-ALICE", TAKA_PORTAL, ["birth_date"], basis="APPI27-1-1")
    seed_provision(aizu, "S-BOB", BIZ, ["secret_item_of_bob"], purpose="BOB-ONLY-PURPOSE")
    yield made
    made.close()


def issue(cf: ConsoleFederation, subject: str) -> str:
    out = cf.aizu.handle.cli("records", "access-code", "--subject", subject, "--json").json()
    assert out["subject_ref"] == subject
    return str(out["code"])


def resident(cf: ConsoleFederation, node: str = "aizu") -> Browser:
    cn = cf.aizu if node == "aizu" else cf.takamatsu
    return Browser(cn.disclosure_url, cn.ssl_context())


def open_with(b: Browser, subject: str, code: str) -> tuple[int, str]:
    token = b.csrf("/")
    status, headers, text = b.post("/", {"csrf": token, "subject": subject, "code": code})
    return status, headers.get("location", text)


def test_codes_are_issued_once_and_stored_only_as_a_hash(cf: ConsoleFederation) -> None:
    code = issue(cf, "S-ALICE")
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", code)
    node = NodeHome.open(cf.aizu.handle.dir)
    try:
        with node.engine.connect() as conn:
            hashes = conn.execute(sa.text("SELECT code_hash FROM disclosure_codes")).scalars()
            stored = list(hashes)
        assert stored and all(h.startswith("$argon2id$") for h in stored)
        assert not any(code.replace("-", "") in h or code in h for h in stored)
        assert node.path.joinpath("secnode.db").read_bytes().find(code.encode()) == -1
    finally:
        node.close()
    out = cf.aizu.handle.cli("records", "access-code", "--subject", "", check=False)
    assert out.exit_code != 0 and "subject reference" in out.output


def test_a_valid_code_shows_exactly_the_holders_records(cf: ConsoleFederation) -> None:
    b = resident(cf)
    status, where = open_with(b, "S-ALICE", issue(cf, "S-ALICE").lower())  # case does not matter
    assert (status, where) == (303, "/records")
    status, _, text = b.get("/records?subject=S-BOB")  # the session names the subject, not the URL
    assert status == 200
    assert 'id="subject-ref">S-ALICE<' in text
    assert text.count('class="provision"') == 2
    assert "Takamatsu City" in text and "name, address" in text and "birth_date" in text
    assert "本人同意" in text and "Consent of the individual" in text
    assert "法令に基づく場合" in text and "Based on laws and regulations" in text
    # the purpose of the decision behind the provision, labelled from the policy registry
    assert "児童見守り" in text and "Child watch service" in text
    assert text.count(" JST</td>") == 2  # times as a resident in Japan reads them
    for other in ("S-BOB", "secret_item_of_bob", "BOB-ONLY-PURPOSE", BIZ):
        assert other not in text.replace('id="subject-ref">S-ALICE<', ""), other


def test_unknown_subject_wrong_expired_and_spent_codes_get_one_answer(
    cf: ConsoleFederation,
) -> None:
    node = NodeHome.open(cf.aizu.handle.dir)
    try:
        expired, _ = disclosure.issue_code(node.engine, "S-CAROL", "test", dt.timedelta(days=1))
        with node.engine.begin() as conn:
            conn.execute(
                sa.update(tables.access_codes)
                .where(tables.access_codes.c.subject_ref == "S-CAROL")
                .values(expires_at="2000-01-01T00:00:00+00:00")
            )
    finally:
        node.close()
    spent = issue(cf, "S-ALICE")
    assert open_with(resident(cf), "S-ALICE", spent)[0] == 303
    b = resident(cf)
    token = b.csrf("/")
    answers = set()
    for subject, code in (
        ("S-NOBODY", "AAAA-BBBB-CCCC"),  # unknown subject
        ("S-BOB", "AAAA-BBBB-CCCC"),  # a subject with records, a wrong code (none issued)
        ("S-ALICE", "AAAA-BBBB-CCCC"),  # wrong code while a valid one exists? (none left)
        ("S-CAROL", expired),  # expired
        ("S-ALICE", spent),  # spent
    ):
        status, headers, text = b.post("/", {"csrf": token, "subject": subject, "code": code})
        answers.add((status, text))
        assert "location" not in headers
    assert len(answers) == 1, answers
    status, text = answers.pop()
    assert status == 401 and "not valid" in text


def test_wrong_guesses_void_a_code(cf: ConsoleFederation) -> None:
    node = NodeHome.open(cf.aizu.handle.dir)
    try:
        code, _ = disclosure.issue_code(node.engine, "S-DAVE", "test")
        for _ in range(disclosure.MAX_FAILURES):
            assert not disclosure.redeem(node.engine, "S-DAVE", "WRON-GCOD-EXXX")
        assert not disclosure.redeem(node.engine, "S-DAVE", code)
        fresh, _ = disclosure.issue_code(node.engine, "S-DAVE", "test")
        assert disclosure.redeem(node.engine, "S-DAVE", fresh)
        assert not disclosure.redeem(node.engine, "S-DAVE", fresh)  # one use
    finally:
        node.close()


def test_the_disclosure_forms_refuse_a_missing_or_wrong_csrf_token(cf: ConsoleFederation) -> None:
    b = resident(cf)
    b.csrf("/")
    code = issue(cf, "S-ALICE")
    for form in ({}, {"csrf": "forged"}):
        status, _, _ = b.post("/", {**form, "subject": "S-ALICE", "code": code})
        assert status == 403
    assert open_with(b, "S-ALICE", code)[0] == 303  # the code was not spent by the refusals
    for form in ({}, {"csrf": "forged"}):
        status, _, _ = b.post("/request", {**form, "kind": "stop", "target": TAKA_PORTAL})
        assert status == 403
        status, _, _ = b.post("/logout", form)
        assert status == 403
    assert b.get("/records")[0] == 200  # a forged logout did not end the session


def test_requests_are_recorded_for_the_privacy_office(cf: ConsoleFederation) -> None:
    b = resident(cf)
    assert open_with(b, "S-ALICE", issue(cf, "S-ALICE"))[0] == 303
    _, _, text = b.get("/records")
    csrf = re.search(r'name="csrf" value="([^"]+)"', text)
    assert csrf
    status, _, text = b.post(
        "/request",
        {"csrf": csrf.group(1), "kind": "stop", "target": TAKA_PORTAL, "note": "<b>please</b>"},
    )
    assert status == 200 and 'id="sent"' in text and TAKA_PORTAL in text
    node = NodeHome.open(cf.aizu.handle.dir)
    try:
        asked = disclosure.requests(node.engine, "S-ALICE")
    finally:
        node.close()
    assert [(r["kind"], r["target"], r["status"]) for r in asked] == [("stop", TAKA_PORTAL, "open")]
    console = Browser(cf.aizu.console_url, cf.aizu.ssl_context())
    assert console.login("arthur")[0] == 303
    _, _, page = console.get("/policy")
    assert "S-ALICE" in page and "&lt;b&gt;please&lt;/b&gt;" in page
    status, _, _ = b.post("/request", {"csrf": csrf.group(1), "kind": "apply-now", "target": "x"})
    assert status == 400


def test_access_codes_are_rate_limited_per_address(cf: ConsoleFederation) -> None:
    """On the other node's page (the limit holds for the address for 15 minutes)."""
    b = resident(cf, "takamatsu")
    code = json.loads(
        cf.takamatsu.handle.cli("records", "access-code", "--subject", "S-EVE", "--json").stdout
    )["code"]
    for i in range(10):
        assert open_with(b, f"S-GUESS-{i}", "AAAA-BBBB-CCCC")[0] == 401
    status, text = open_with(b, "S-EVE", code)
    assert status == 429 and "Too many attempts" in text


def test_an_operator_withdraws_a_consent_in_the_console(cf: ConsoleFederation) -> None:
    console = Browser(cf.aizu.console_url, cf.aizu.ssl_context())
    assert console.login("olivia")[0] == 303
    _, _, page = console.get("/policy")
    assert "CR-1" in page and "ConsentGiven" in page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf
    status, headers, _ = console.post(
        "/policy/consents/withdraw", {"csrf": csrf.group(1), "consent_id": "CR-1"}
    )
    assert status == 303 and headers["location"] == "/console/policy?done=withdrawn"
    node = NodeHome.open(cf.aizu.handle.dir)
    try:
        from secnode.policy import admin as policy_admin

        status_now = {c["consent_id"]: c["status"] for c in policy_admin.consents(node, None)}
        trail = [(e["actor"], e["action"], e["target"]) for e in audit.entries(node.engine)]
    finally:
        node.close()
    assert status_now["CR-1"] == "ConsentWithdrawn"
    assert ("olivia", "consent.withdraw", "CR-1") in trail
