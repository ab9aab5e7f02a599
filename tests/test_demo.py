"""``secnode demo --once``: the README's first command, run as a user would.

One real run (module fixture): the X-Road sample calls, then the mission of issue 17
item 6, each step on its own line(s) with what it should show.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from secnode.core.policy import fiscal_year_of
from secnode.demo.mission import run_mission
from tests.conftest import cli_env

pytestmark = pytest.mark.slow


@dataclass
class DemoRun:
    base: Path
    env: dict[str, str]
    proc: subprocess.CompletedProcess[str]

    def step(self, name: str) -> str:
        """The step's line and its continuation line(s), as printed."""
        found = re.search(
            rf"^  \[OK  \] {re.escape(name)}: .*\n(?:^ {{9}}\S.*\n)*", self.proc.stdout, re.M
        )
        assert found, f"no OK line for step {name!r}:\n{self.proc.stdout}"
        return found.group(0)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    base = tmp_path_factory.mktemp("demo-once") / "demo"
    env = cli_env()
    env.pop("SECNODE_PASSPHRASE", None)  # the demo makes its own passphrase file
    proc = subprocess.run(
        [sys.executable, "-m", "secnode", "demo", "--dir", str(base), "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    return DemoRun(base, env, proc)


def test_demo_once_exits_zero_and_writes_manifest(demo_run: DemoRun) -> None:
    base, env, proc = demo_run.base, demo_run.env, demo_run.proc
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all sample calls succeeded" in proc.stdout
    assert "every mission step showed its point" in proc.stdout
    assert proc.stdout.count("[OK  ]") == 5 + 9 and "[FAIL]" not in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    manifest = json.loads((base / "demo.json").read_text())
    assert set(manifest["nodes"]) == {"aizu", "takamatsu"}
    for node in manifest["nodes"].values():
        assert Path(node["dir"], "secnode.toml").exists()
        assert node["client_url"].startswith("http://127.0.0.1:")
        # the web console and the resident page, printed and in the manifest (issue 16)
        assert node["console_url"].startswith("https://127.0.0.1:")
        assert node["console_url"].endswith("/console/")
        assert node["disclosure_url"].startswith("https://127.0.0.1:")
        assert node["console_url"] in proc.stdout and node["disclosure_url"] in proc.stdout
        # ... and no account shipped with it: the operator makes one
        users = subprocess.run(
            [sys.executable, "-m", "secnode", "admin", "user", "list", "--json"],
            capture_output=True,
            text=True,
            env=env,
            cwd=node["dir"],
            check=True,
        )
        assert json.loads(users.stdout) == []
    kinds = {s["type"] for s in manifest["services"]}
    assert kinds == {"rest", "soap"}
    for sub in ("ca", "tsa", "central", "aizu", "takamatsu"):
        assert (base / sub).is_dir()
    assert (base / "passphrase").stat().st_mode & 0o077 == 0


# ----- the mission (issue 17 item 6) ------------------------------------------------------------
def test_consent_request_is_allowed_and_cut_to_the_agreed_fields(demo_run: DemoRun) -> None:
    line = demo_run.step("consent")
    assert "basis CONSENT (CR-DEMO-1): HTTP 200, ALLOW OK_CONSENT (APPI Art. 69(2)(i))" in line
    assert "answered id, name, address, birth_year, household" in line
    assert "released only name, address (agreement DSA-DEMO-1)" in line


def test_withdrawn_consent_is_refused_without_calling_the_service(demo_run: DemoRun) -> None:
    line = demo_run.step("withdrawn")
    assert "consent withdraw CR-DEMO-1" in line
    assert "HTTP 500 Server.ServerProxy.AccessDenied CONSENT_NOT_VALID" in line
    assert "DENY CONSENT_NOT_VALID" in line and "was not called" in line


def test_emergency_exception_with_evidence(demo_run: DemoRun) -> None:
    line = demo_run.step("exception")
    assert "ORD-EMERGENCY" in line and "evidence ref=AIZU-FIRE-2026-0815" in line
    assert "HTTP 200, OK_EXCEPTION (APPI Art. 69(2)(iv) + " in line
    assert "released name, address, household" in line
    assert "NOTIFY_PRIVACY_OFFICER, POST_REVIEW" in line


def test_records_and_the_residents_disclosure(demo_run: DemoRun) -> None:
    records = demo_run.step("records")
    assert "Aizu provision records (Art. 29): 2 (CONSENT/CONSENT, ORD-EMERGENCY/EXCEPTION)" in (
        records
    )
    assert "Takamatsu receipt records (Art. 30): 2 from 会津若松市, the same message ids" in records
    disclosure = demo_run.step("disclosure")
    assert "secnode records --subject S-DEMO-1001 (Aizu): 2 provision(s), 0 receipt(s)" in (
        disclosure
    )
    # ... and the resident's own view: the disclosure page opened with a one-time code
    page = json.loads((demo_run.base / "demo.json").read_text())["nodes"]["aizu"]
    assert f"the resident sees the same 2 provision(s) at {page['disclosure_url']}" in disclosure


def test_both_logs_verify_and_reconcile(demo_run: DemoRun) -> None:
    verify = demo_run.step("log verify")
    assert re.search(r"\[OK  \] log verify: Aizu: OK: \d+ records", verify), verify
    assert re.search(r"^ {9}Takamatsu: OK: \d+ records", verify, re.M), verify
    reconcile = demo_run.step("log reconcile")
    found = re.search(r"(\d+) exchange\(s\), (\d+) witnessed position\(s\)", reconcile)
    assert found and "the two logs agree" in reconcile, reconcile
    # the sample calls both ways and the mission's three requests, all between the cities
    assert int(found.group(1)) >= 5 and int(found.group(2)) >= 2


def test_transparency_report_is_written_as_html_with_the_provisions(demo_run: DemoRun) -> None:
    year = fiscal_year_of(dt.datetime.now(dt.UTC))
    html_path = demo_run.base / f"transparency-aizu-FY{year}.html"
    line = demo_run.step("report")
    assert (
        str(html_path) in line
        and "to 高松市 (高松市 福祉窓口システム) 2 provision(s), 1 refused" in line
    )
    html = html_path.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html")
    for text in (
        "会津若松市",
        "高松市 福祉窓口システム",
        "本人同意",
        "生命・身体の保護のための緊急の提供",
    ):
        assert text in html, text
    assert "JP/GOV/372013" not in html and "DSA-DEMO-1" not in html  # published: no ids
    assert (demo_run.base / "mission" / "agreement.json").is_file()


def test_a_step_that_cannot_show_its_point_fails_the_mission(demo_run: DemoRun) -> None:
    """Run again on the stopped federation: the service exists, the nodes are gone."""
    assert demo_run.proc.returncode == 0, demo_run.proc.stdout
    said: list[str] = []
    assert run_mission(demo_run.base, say=said.append) is False
    [failed] = [line for line in said if "[FAIL]" in line]
    assert failed.startswith("  [FAIL] policy: 'secnode service add' failed: "), said
    assert not any("[OK  ]" in line for line in said)  # nothing else is claimed
    said.clear()
    assert run_mission(demo_run.base / "missing", say=said.append) is False
    assert any("[FAIL]" in line and "demo.json cannot be read" in line for line in said), said
