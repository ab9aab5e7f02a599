"""Issue 15 (4, 5): the metrics and logs of real running daemons.

One federation per module: CA + OCSP responder, TSA, central registry, Aizu (provider of
residents/echo) and Takamatsu (client), all real subprocesses on 127.0.0.1. Every
``/metrics`` is scraped over HTTP and parsed with ``prometheus_client``'s own parser; a
real exchange must move the counters and histograms it should; every metric the sample
alert rules name must exist; the four daemons restarted with ``--log-format json`` must
write only JSON lines, with the request's fields and without secrets.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PASSPHRASE, cli_env, wait_for_port
from tests.support.common import wait_until
from tests.support.logfed import (
    LogFederation,
    build_log_federation,
    log_cli,
    wait_stamped,
)

pytestmark = pytest.mark.slow

ALERTS = Path(__file__).resolve().parent.parent / "docs" / "deploy" / "prometheus-alerts.yml"
SERVICE = "JP/GOV/072028/residents/echo"


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> tuple[Samples, set[str]]:
    """(sample name + labels -> value, family and sample names) of ``url``/metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples: Samples = {}
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for s in family.samples:
            names.add(s.name)
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, names


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over samples of ``name`` whose labels include ``labels`` (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and want <= lbls)


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(lbls) for (n, lbls), _ in samples.items() if n == name]


@pytest.fixture(scope="module")
def lf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogFederation]:
    lf = build_log_federation(
        tmp_path_factory.mktemp("metrics") / "fed", settings={"timestamping_interval": 1}
    )
    try:
        lf.start_nodes()
        yield lf
    finally:
        lf.close()


def urls(lf: LogFederation) -> dict[str, str]:
    return {
        "aizu": lf.aizu.admin_url,
        "takamatsu": lf.takamatsu.admin_url,
        "central": lf.fed.central_url,
        "ocsp": lf.fed.ocsp_url,
        "tsa": f"http://127.0.0.1:{lf.tsa_port}",
    }


def test_an_exchange_moves_the_counters_and_histograms_of_both_nodes(lf: LogFederation) -> None:
    client_before, _ = scrape(lf.takamatsu.admin_url)
    provider_before, _ = scrape(lf.aizu.admin_url)
    reply = lf.call()
    assert reply.status == 200, reply.body
    client, _ = scrape(lf.takamatsu.admin_url)
    provider, _ = scrape(lf.aizu.admin_url)

    def moved(after: Samples, before: Samples, name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    out = {"direction": "outbound", "service": SERVICE}
    inb = {"direction": "inbound", "service": SERVICE}
    assert moved(client, client_before, "secnode_requests_total", result="ok", code="", **out) == 1
    assert moved(client, client_before, "secnode_request_duration_seconds_count", **out) == 1
    assert moved(client, client_before, "secnode_requests_total", direction="inbound") == 0
    assert moved(provider, provider_before, "secnode_requests_total", result="ok", **inb) == 1
    assert moved(provider, provider_before, "secnode_request_duration_seconds_count", **inb) == 1
    # the latency went into a bucket: +Inf counts it, and the sum grew
    assert (
        moved(client, client_before, "secnode_request_duration_seconds_bucket", le="+Inf", **out)
        == 1
    )
    assert moved(client, client_before, "secnode_request_duration_seconds_sum", **out) > 0
    # no policy on these nodes: the client leaves it to the provider, which has none
    assert (
        moved(
            client,
            client_before,
            "secnode_policy_decisions_total",
            side="client",
            outcome="allow",
            reason="PROVIDER_DECIDES",
        )
        == 1
    )
    assert (
        moved(
            provider,
            provider_before,
            "secnode_policy_decisions_total",
            side="provider",
            outcome="allow",
            reason="NO_POLICY",
        )
        == 1
    )
    # both ends logged it (request and response on each side)
    assert moved(client, client_before, "secnode_messagelog_records_total") == 2
    assert moved(provider, provider_before, "secnode_messagelog_records_total") == 2
    assert value(client, "secnode_messagelog_write_errors_total") == 0


def test_a_refusal_is_counted_with_its_error_code_and_no_label_of_its_own(
    lf: LogFederation,
) -> None:
    before, _ = scrape(lf.takamatsu.admin_url)
    url = f"{lf.takamatsu.client_url}/r1/{lf.aizu.member}/residents/echo"
    request = urllib.request.Request(
        url, data=b"{}", method="POST", headers={"X-Road-Client": "JP/GOV/999999/nobody"}
    )
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("an unknown client must be refused")
    except urllib.error.HTTPError as exc:
        code = exc.headers["X-Road-Error"]
        exc.close()
    after, _ = scrape(lf.takamatsu.admin_url)
    labels = {"direction": "outbound", "result": "refused", "code": code}
    assert (
        value(after, "secnode_requests_total", **labels)
        - value(before, "secnode_requests_total", **labels)
        == 1
    )
    # the service was answered before, so it keeps its label; a new one would be 'other'
    assert {"service": SERVICE, **labels, "direction": "outbound"} in series(
        after, "secnode_requests_total"
    )


def test_certificate_configuration_and_ocsp_gauges_match_the_node(lf: LogFederation) -> None:
    samples, _ = scrape(lf.aizu.admin_url)
    status = lf.aizu.status()
    now = dt.datetime.now(dt.UTC)
    for usage in ("auth", "sign"):
        cert = x509.load_pem_x509_certificate(lf.aizu.cert_path(usage).read_bytes())
        left = value(samples, "secnode_certificate_expiry_seconds", usage=usage)
        assert abs(left - (cert.not_valid_after_utc - now).total_seconds()) < 120
        assert [s["usage"] for s in series(samples, "secnode_certificate_expiry_seconds")].count(
            usage
        ) == 1
        assert 0 <= value(samples, "secnode_ocsp_age_seconds", usage=usage) < 3600
        assert value(samples, "secnode_ocsp_good", usage=usage) == 1
    assert value(samples, "secnode_ocsp_freshness_seconds") > 0
    assert value(samples, "secnode_conf_version") == status["conf"]["version"]
    validity = value(samples, "secnode_conf_validity_seconds")
    assert 0 <= value(samples, "secnode_conf_age_seconds") < validity
    assert value(samples, "secnode_healthy") == 1
    assert value(samples, "process_start_time_seconds") > 0


def test_stamping_backlog_gauges_and_tsa_counters(lf: LogFederation) -> None:
    tsa = urls(lf)["tsa"]
    before, _ = scrape(tsa)
    assert lf.call().status == 200
    wait_stamped(lf.aizu.dir)
    wait_stamped(lf.takamatsu.dir)
    after, _ = scrape(tsa)
    granted = value(after, "tsa_responses_total", result="granted")
    assert granted > value(before, "tsa_responses_total", result="granted")
    assert value(after, "tsa_request_duration_seconds_count") == sum(
        v for (n, _), v in after.items() if n == "tsa_responses_total"
    )
    cert = x509.load_pem_x509_certificate((lf.tsa_dir / "tsa.pem").read_bytes())
    left = value(after, "tsa_certificate_expiry_seconds")
    assert abs(left - (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds()) < 120
    node, _ = scrape(lf.aizu.admin_url)
    assert value(node, "secnode_messagelog_stamp_failure_period_seconds") > 0
    assert value(node, "secnode_messagelog_stamp_backlog_age_seconds") >= 0
    assert ("secnode_messagelog_stamp_backlog", frozenset()) in node


def test_ocsp_responder_counts_what_it_answers(lf: LogFederation) -> None:
    before, _ = scrape(lf.fed.ocsp_url)
    lf.aizu.cli("sync")  # fetches OCSP for both certificates from the responder
    after, _ = scrape(lf.fed.ocsp_url)
    assert (
        value(after, "ocsp_responses_total", result="good")
        - value(before, "ocsp_responses_total", result="good")
        == 2
    )
    assert (
        value(after, "ocsp_request_duration_seconds_count")
        - value(before, "ocsp_request_duration_seconds_count")
        == 2
    )
    roles = {s["role"] for s in series(after, "ocsp_certificate_expiry_seconds")}
    assert roles == {"signer", "issuer"}


def test_registry_counts_requests_and_reports_the_configuration(lf: LogFederation) -> None:
    before, _ = scrape(lf.fed.central_url)
    with urllib.request.urlopen(f"{lf.fed.central_url}/globalconf", timeout=10) as resp:
        assert resp.status == 200
    try:
        urllib.request.urlopen(f"{lf.fed.central_url}/globalconf?version=x", timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 400
        exc.close()
    after, _ = scrape(lf.fed.central_url)
    ok = {"route": "/globalconf", "status": "200", "code": ""}
    assert (
        value(after, "central_http_requests_total", **ok)
        - value(before, "central_http_requests_total", **ok)
        == 1
    )
    bad = {"route": "/globalconf", "status": "400"}
    assert (
        value(after, "central_http_requests_total", **bad)
        - value(before, "central_http_requests_total", **bad)
        == 1
    )
    assert {s["code"] for s in series(after, "central_http_requests_total") if s["status"] == "400"}
    count = "central_http_request_duration_seconds_count"
    assert value(after, count, route="/globalconf") - value(before, count, route="/globalconf") == 2
    assert value(after, "central_globalconf_version") == lf.fed.conf_version()
    assert value(after, "central_globalconf_age_seconds") < value(
        after, "central_globalconf_validity_seconds"
    )
    assert {s["state"] for s in series(after, "central_signing_certificate_expiry_seconds")} == {
        "active"
    }


# ----- the alert rules ----------------------------------------------------------------------
PROMQL_WORDS = {
    "and", "or", "unless", "bool", "on", "ignoring", "group_left", "group_right", "by",
    "without", "offset", "inf", "nan",
    # aggregations may take their by/without clause before the parenthesis
    "sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk",
    "quantile", "count_values",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names of a PromQL expression: identifiers that are not functions,
    keywords, label names (inside braces or a by/ignoring list) or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[m.end() :].lstrip()
        if m.group() in PROMQL_WORDS or rest.startswith("("):
            continue
        names.add(m.group())
    return names


def test_metric_names_of_promql() -> None:
    assert metric_names(
        'sum by (instance, code) (rate(secnode_requests_total{result!="ok"}[5m])) > 1'
    ) == {"secnode_requests_total"}
    assert metric_names("a_b > ignoring(usage) group_left 0.75 * c_d") == {"a_b", "c_d"}


def test_every_metric_in_the_alert_rules_exists_in_a_scrape(lf: LogFederation) -> None:
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    exprs = {r["alert"]: r["expr"] for r in rules}
    assert "< 14 * 86400" in exprs["SecnodeCertificateExpiringSoon"]
    assert "secnode_ocsp_good == 0" in exprs["SecnodeOcspStale"]
    assert "0.5 * secnode_messagelog_stamp_failure_period" in exprs["SecnodeStampingBacklogOld"]
    assert "> secnode_conf_validity_seconds" in exprs["SecnodeConfigurationExpired"]
    scraped: set[str] = set()
    for url in urls(lf).values():
        scraped |= scrape(url)[1]
    for rule in rules:
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        missing = names - scraped
        assert not missing, f"{rule['alert']}: {sorted(missing)} in no scrape"


# ----- structured logs ----------------------------------------------------------------------
def _restart_json(
    lf: LogFederation, name: str, tool: str, args: list[str], port: int, out: Path
) -> subprocess.Popen[bytes]:
    lf.fed.stop(name)
    with (out / f"{name}.stderr").open("wb") as stderr:  # the child keeps its own copy
        proc = subprocess.Popen(
            [sys.executable, "-m", tool, *args, "--log-format", "json"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=cli_env(),
        )
    wait_for_port(port, 30, proc)
    return proc


def test_json_logs_of_the_four_daemons(lf: LogFederation, tmp_path: Path) -> None:
    fed = lf.fed
    daemons = {
        "ocsp": ("certs", ["ocsp", "serve", str(fed.ca_dir), "--port", str(fed.ocsp_port)],
                 fed.ocsp_port),
        "central": ("central", ["serve", "--port", str(fed.central_port), "--dir",
                                str(fed.central_dir)], fed.central_port),
        "tsa": ("certs", ["tsa", "serve", str(lf.tsa_dir), "--port", str(lf.tsa_port)],
                lf.tsa_port),
        "node-aizu": ("secnode", ["serve", "--dir", str(lf.aizu.dir)], lf.aizu.admin_port),
    }  # fmt: skip
    procs = {
        name: _restart_json(lf, name, tool, args, port, tmp_path)
        for name, (tool, args, port) in daemons.items()
    }
    try:
        wait_until(lambda: lf.aizu.health()[0] == 200, 30, "aizu healthy again")
        assert lf.call().status == 200
        # a refusal at Aizu's node-to-node interface: a message id it has seen (replay)
        replay = lf.call(message_id=lf.call().message_id)
        assert replay.error, replay.body
        urllib.request.urlopen(f"{fed.central_url}/globalconf", timeout=10).close()
        lf.aizu.cli("sync")  # OCSP requests to the responder
        wait_stamped(lf.aizu.dir)
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(timeout=20)
    secrets = [PASSPHRASE.decode(), "PRIVATE KEY", "BEGIN"]
    for name in daemons:
        raw = (tmp_path / f"{name}.stderr").read_text()
        assert raw.strip(), f"{name} wrote nothing"
        for secret in secrets:
            assert secret not in raw, f"{name} logged {secret!r}"
        lines = [json.loads(line) for line in raw.splitlines()]  # every line is JSON
        for line in lines:
            assert {"time", "level", "component", "message"} <= set(line), line
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
            assert line["level"] in {"debug", "info", "warning", "error", "critical"}
        messages = [line["message"] for line in lines]
        assert any(re.search(r"serving|listening|responder for", m) for m in messages), messages
        assert "stopped" in messages[-1], messages[-1]
    node_lines = [json.loads(x) for x in (tmp_path / "node-aizu.stderr").read_text().splitlines()]
    refusals = [x for x in node_lines if x["message"].startswith("refused ")]
    assert refusals, node_lines
    first = refusals[0]
    assert first["message_id"] and first["client"] == f"{lf.takamatsu.member}/portal"
    assert first["service"] == SERVICE and first["error_code"] == replay.error
    ocsp_lines = [json.loads(x) for x in (tmp_path / "ocsp.stderr").read_text().splitlines()]
    assert any(x.get("client") == "127.0.0.1" for x in ocsp_lines)
    _restart_defaults(lf)


def _restart_defaults(lf: LogFederation) -> None:
    """Leave the federation as the fixture made it (text logs) for later tests."""
    lf.fed.start_ocsp()
    lf.fed.start_central()
    lf.start_tsa()
    lf.fed.start_node("aizu")


# ----- log show (issue 15, 8): readable values and bodies ---------------------------------------
def _shown(lf: LogFederation, message_id: str) -> str:
    found = json.loads(
        log_cli(
            lf.takamatsu, "search", "--message-id", message_id, "--direction", "request_out",
            "--json",
        ).stdout
    )  # fmt: skip
    assert len(found) == 1, found
    return log_cli(lf.takamatsu, "show", found[0]["id"], "--body", check=True).stdout


def test_log_show_prints_readable_values_and_a_text_body(lf: LogFederation) -> None:
    reply = lf.call(body='{"名前":"会津"}'.encode())
    assert reply.status == 200
    out = _shown(lf, reply.message_id)
    fields = dict(line.split(":", 1) for line in out.splitlines() if not line.startswith(" "))
    assert fields["body_kept"].strip() == "yes"
    for python_repr in ("None", "True", "False", "{'"):
        assert python_repr not in out, out
    body = '{"名前":"会津"}'.encode()
    assert f"{len(body)} bytes, sha256 {hashlib.sha256(body).hexdigest()}" in out
    assert '  {"名前":"会津"}' in out.splitlines()
    assert base64.b64encode(body).decode() not in out


def test_log_show_gives_a_binary_body_as_size_and_digest(lf: LogFederation) -> None:
    body = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"
    reply = lf.call(body=body)
    out = _shown(lf, reply.message_id)
    assert f"{len(body)} bytes, not text, sha256 {hashlib.sha256(body).hexdigest()}" in out
    assert "\x1a" not in out and "\x00" not in out
