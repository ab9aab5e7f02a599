"""The console and the disclosure page in a real browser: headless Chromium (Debian's
``chromium`` and ``chromium-driver``) driven by selenium against ``secnode serve``.

An operator logs in, revokes and grants an access right and the next exchange honours
each change, searches the log and opens a record, downloads the transparency report;
a resident opens the disclosure page with a valid code and sees exactly their records,
and a wrong code is refused. Screenshots of each page go to ``test-screenshots/``
(gitignored). Skipped, with the reason, where Chromium or its driver is absent.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from secnode.core.identifiers import ServiceId, SubsystemId
from secnode.demo.calls import CallResult, call_rest
from tests.support.console import PASSWORDS, ConsoleFederation, build, seed_provision

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
SHOTS = Path(__file__).resolve().parent.parent / "test-screenshots"

if CHROMIUM is None or DRIVER is None:
    pytest.skip(
        "headless Chromium needed: apt-get install chromium chromium-driver (.ci/run does)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the dev extra) needed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TAKA_PORTAL = "JP/GOV/372013/portal"


@pytest.fixture(scope="module")
def cf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleFederation]:
    made = build(tmp_path_factory.mktemp("browser"))
    aizu = made.aizu.handle.dir
    seed_provision(aizu, "S-HANAKO", TAKA_PORTAL, ["name", "address"], basis="CONSENT")
    seed_provision(aizu, "S-TARO", "JP/GOV/282103/app", ["taro_only_item"], basis="APPI27-1-1")
    yield made
    made.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1100,800",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    options.accept_insecure_certs = True  # each node's self-signed certificate
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.implicitly_wait(10)
    driver.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def shows(driver: WebDriver, element_id: str, text: str) -> None:
    """Wait until the page (the new one, after a click) shows ``text`` in the element."""
    WebDriverWait(driver, 20).until(
        expected_conditions.text_to_be_present_in_element((By.ID, element_id), text)
    )


def login(driver: WebDriver, cf: ConsoleFederation, user: str) -> None:
    driver.get(cf.aizu.console_url + "/login")
    shot(driver, "login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(PASSWORDS[user])
    driver.find_element(By.ID, "login").click()
    assert (
        driver.find_element(By.ID, "who").text
        == f"{user} ({'operator' if user == 'olivia' else 'auditor'})"
    )


def residents_call(cf: ConsoleFederation) -> CallResult:
    taka, aizu = cf.takamatsu.handle, cf.aizu.handle
    return call_rest(
        taka.client_url,
        SubsystemId.parse(f"{taka.member}/portal"),
        ServiceId.parse(f"{aizu.member}/residents/residents"),
        "/1001",
    )


def test_operator_changes_an_access_right_and_the_next_exchange_honours_it(
    cf: ConsoleFederation, browser: WebDriver
) -> None:
    login(browser, cf, "olivia")
    assert browser.find_element(By.ID, "health-status").text in ("ok", "degraded", "unhealthy")
    shot(browser, "dashboard")
    assert residents_call(cf).status == 200
    browser.get(cf.aizu.console_url + "/services")
    shot(browser, "services")
    browser.find_element(
        By.CSS_SELECTOR,
        f'button.revoke[data-service="residents/residents"][data-client="{TAKA_PORTAL}"]',
    ).click()
    shows(browser, "done", "Access right revoked.")
    denied = residents_call(cf)
    assert denied.status >= 400 and b"AccessDenied" in denied.body
    browser.find_element(By.ID, "grant-service").send_keys("residents/residents")
    browser.find_element(By.ID, "grant-client").send_keys(TAKA_PORTAL)
    browser.find_element(By.ID, "grant").click()
    shows(browser, "done", "Access right granted.")
    assert residents_call(cf).status == 200
    browser.get(cf.aizu.console_url + "/audit")
    trail = browser.find_element(By.ID, "audit").text
    assert "acl.revoke" in trail and "acl.grant" in trail and "olivia" in trail
    shot(browser, "audit")


def test_auditor_searches_the_log_and_opens_a_record(
    cf: ConsoleFederation, browser: WebDriver
) -> None:
    message_id = residents_call(cf).headers["X-Road-Id"]
    login(browser, cf, "arthur")
    browser.get(cf.aizu.console_url + "/log")
    browser.find_element(By.ID, "message_id").send_keys(message_id)
    browser.find_element(By.ID, "search").click()
    rows = browser.find_element(By.ID, "records").text
    assert message_id in rows
    shot(browser, "log")
    browser.find_elements(By.CLASS_NAME, "open-record")[0].click()
    record = browser.find_element(By.ID, "record").text
    assert message_id in record and "record_hash" in record
    shot(browser, "record")
    browser.get(cf.aizu.console_url + "/log")
    browser.find_element(By.ID, "verify").click()
    WebDriverWait(browser, 60).until(  # the page refreshes itself until the run is done
        expected_conditions.presence_of_element_located((By.ID, "verdict"))
    )
    assert browser.find_element(By.ID, "verdict").text
    shot(browser, "verify")


def test_auditor_downloads_the_transparency_report(
    cf: ConsoleFederation, browser: WebDriver
) -> None:
    login(browser, cf, "arthur")
    browser.get(cf.aizu.console_url + "/policy")
    shot(browser, "policy")
    fy = browser.find_element(By.ID, "fy")
    fy.clear()
    fy.send_keys("2026")
    browser.find_element(By.ID, "show-report").click()
    shows(browser, "report-title", "FY2026")
    shot(browser, "report")
    browser.find_element(By.ID, "report-csv").click()
    target = browser.downloads / "transparency-FY2026.csv"  # type: ignore[attr-defined]
    deadline = time.monotonic() + 20
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert target.exists(), list(browser.downloads.iterdir())  # type: ignore[attr-defined]
    assert target.read_text(encoding="utf-8").splitlines()[0].count(",") >= 4


def test_resident_sees_exactly_their_records_and_a_wrong_code_is_refused(
    cf: ConsoleFederation, browser: WebDriver
) -> None:
    code = cf.aizu.handle.cli("records", "access-code", "--subject", "S-HANAKO", "--json").json()[
        "code"
    ]
    browser.get(cf.aizu.disclosure_url + "/")
    shot(browser, "disclosure-start")
    browser.find_element(By.ID, "subject").send_keys("S-HANAKO")
    browser.find_element(By.ID, "code").send_keys("AAAA-BBBB-CCCC")
    browser.find_element(By.ID, "open").click()
    assert "not valid" in browser.find_element(By.ID, "error").text
    shot(browser, "disclosure-refused")
    browser.find_element(By.ID, "subject").send_keys("S-HANAKO")
    browser.find_element(By.ID, "code").send_keys(code)
    browser.find_element(By.ID, "open").click()
    assert browser.find_element(By.ID, "subject-ref").text == "S-HANAKO"
    table = browser.find_element(By.ID, "provisions").text
    assert len(browser.find_elements(By.CLASS_NAME, "provision")) == 1
    assert "Takamatsu City" in table and "name, address" in table and "本人同意" in table
    assert "S-TARO" not in browser.page_source and "taro_only_item" not in browser.page_source
    shot(browser, "disclosure-records")
