"""Issue 6 fault tests: TSA outages shorter and longer than the acceptable failure period, and
a node killed with SIGKILL in the middle of a burst.

Short settings come from the registry, as an operator would set them
(``central settings set``): time-stamping every second, an acceptable
time-stamp failure period of a few seconds. The TSA is a real ``certs tsa
serve`` process that the tests stop and start.
"""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for_port
from tests.support.common import wait_until
from tests.support.logfed import (
    AIZU,
    TAKAMATSU,
    LogFederation,
    Reply,
    build_log_federation,
    records_by_message,
    sqlite_db,
    verify_json,
    wait_stamped,
)

pytestmark = pytest.mark.slow

FAILURE_PERIOD = 4


@pytest.fixture(scope="module")
def lf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogFederation]:
    fed = build_log_federation(
        tmp_path_factory.mktemp("mlog-faults"),
        settings={
            "timestamping_interval": 1,
            "acceptable_timestamp_failure_period": FAILURE_PERIOD,
        },
        node_config={"messagelog": {"archive_interval": 0}},
        dead_tsa_first=True,
    )
    try:
        fed.start_nodes()
        yield fed
    finally:
        fed.close()


def stamping(lf: LogFederation) -> dict[str, object]:
    return dict(lf.takamatsu.health()[1]["messagelog"]["stamping"])


def test_stamping_fails_over_to_the_next_approved_tsa(lf: LogFederation) -> None:
    """The first approved TSA never answers; every batch comes from the second."""
    assert lf.call().status == 200
    wait_stamped(lf.takamatsu.dir)
    with sqlite_db(lf.takamatsu.dir) as conn:
        used = {row[0] for row in conn.execute("SELECT tsa_name FROM mlog_batches")}
    assert used == {"test-tsa"}
    assert stamping(lf)["last_error"] is None


def test_tsa_down_shorter_than_the_failure_period(lf: LogFederation) -> None:
    assert lf.call().status == 200
    wait_stamped(lf.takamatsu.dir)
    lf.stop_tsa()
    try:
        started = time.monotonic()
        replies = []
        while time.monotonic() - started < FAILURE_PERIOD / 2:
            replies.append(lf.call())
            time.sleep(0.1)
        assert {r.status for r in replies} == {200}, [r.body for r in replies]
        wait_until(lambda: stamping(lf)["last_error"], 5, "the failed round to be reported")
        state = stamping(lf)
        assert state["backlog"] and state["failing_since"] and not state["refusing"]
        code, health = lf.takamatsu.health()
        assert code == 200 and any("time-stamping failing" in w for w in health["warnings"])
    finally:
        lf.start_tsa()
    wait_stamped(lf.takamatsu.dir)
    wait_stamped(lf.aizu.dir)
    wait_until(lambda: stamping(lf)["failing_since"] is None, 5, "stamping to recover")
    for node in (lf.takamatsu, lf.aizu):
        code, report = verify_json(node)
        assert code == 0, report["failures"]


def test_tsa_down_longer_than_the_failure_period(lf: LogFederation) -> None:
    wait_stamped(lf.takamatsu.dir)
    lf.stop_tsa()
    try:
        assert lf.call().status == 200  # exchange goes on at first ...
        refused = wait_until(
            lambda: (r := lf.call()).status != 200 and r, FAILURE_PERIOD + 10, "exchange to stop"
        )
        assert isinstance(refused, Reply)
        assert refused.error.endswith(".TimestampingFailed"), refused.body
        message = json.loads(refused.body)["message"]
        assert "acceptable failure period" in message
        assert "a-down-tsa" in message and "test-tsa" in message  # both were tried
        code, health = lf.takamatsu.health()
        assert code == 503 and any("time-stamping" in r for r in health["reasons"])
        assert health["messagelog"]["stamping"]["refusing"] is True
        # ... and the refusal itself is in the log
        assert "refusal" in records_by_message(lf.takamatsu.dir)[refused.message_id]
    finally:
        lf.start_tsa()
    ok = wait_until(lambda: lf.call().status == 200, 15, "exchange to resume")
    assert ok
    wait_stamped(lf.takamatsu.dir)
    wait_stamped(lf.aizu.dir)
    assert lf.takamatsu.health()[0] == 200
    code, report = verify_json(lf.takamatsu)
    assert code == 0, report["failures"]


def test_sigkill_during_a_burst_loses_no_answered_message(lf: LogFederation) -> None:
    replies: list[Reply] = []
    errors: list[str] = []
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            try:
                replies.append(lf.call(timeout=5))
            # connection refused/reset once the node is gone, or an answer cut off by the kill
            except (OSError, http.client.HTTPException) as exc:
                errors.append(repr(exc))
                time.sleep(0.05)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    proc = lf.fed.processes.pop(f"node-{TAKAMATSU}")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    answered = [r.message_id for r in replies if r.status == 200]
    assert len(answered) > 20 and errors, (len(answered), errors[:3])
    logged = records_by_message(lf.takamatsu.dir)
    lost = [m for m in answered if logged.get(m, set()) != {"request_out", "response_in"}]
    assert not lost, f"{len(lost)} answered messages missing from the log: {lost[:5]}"
    provider = records_by_message(lf.aizu.dir)
    assert all(provider.get(m) == {"request_in", "response_out"} for m in answered)
    lf.fed.start_node(TAKAMATSU)
    code, report = verify_json(lf.takamatsu)  # the killed chain may still be unstamped: young
    assert code == 0, report["failures"]
    assert lf.call().status == 200
    code, report = verify_json(lf.takamatsu)
    assert code == 0, report["failures"]
    assert len(report["chains"]) == 2  # one chain per writer: the killed one and the new one
    wait_stamped(lf.takamatsu.dir)  # the restarted process adopts the orphaned chain
    code, report = verify_json(lf.takamatsu)
    assert code == 0, report["failures"]
    assert report["checked"]["proofs"] == report["checked"]["records"]


def test_verify_counts_records_older_than_the_period_without_stamps(
    lf: LogFederation, tmp_path: Path
) -> None:
    """An auditor later: a record that was never stamped is a finding once it is old."""
    lf.stop_tsa()
    try:
        reply = lf.call()
        assert reply.status == 200
        time.sleep(FAILURE_PERIOD + 1.5)
        code, report = verify_json(lf.takamatsu)
        assert code == 1
        first = report["first_bad_record"]
        assert first["kind"] == "unstamped" and first["record_id"] is not None
    finally:
        lf.start_tsa()
    wait_until(lambda: lf.call().status == 200, 15, "exchange to resume")
    wait_stamped(lf.takamatsu.dir)
    assert verify_json(lf.takamatsu)[0] == 0


def test_restarts_do_not_reset_the_failure_period(lf: LogFederation) -> None:
    """Issue 12 item 6: the period runs from the oldest unstamped record in the database.

    With the TSA still down, neither a clean restart of the client node nor a crash
    (SIGKILL) and restart of the provider node lets exchange resume: their new
    processes inherit the overdue records of the chains before them.
    """
    wait_stamped(lf.takamatsu.dir)
    wait_stamped(lf.aizu.dir)
    lf.stop_tsa()
    try:
        assert lf.call().status == 200
        wait_until(lambda: lf.call().status != 200, FAILURE_PERIOD + 10, "exchange to stop")
        lf.fed.stop_node(TAKAMATSU)
        lf.fed.start_node(TAKAMATSU, wait_healthy=False)
        crashed = lf.fed.processes.pop(f"node-{AIZU}")
        crashed.send_signal(signal.SIGKILL)
        crashed.wait(timeout=10)
        lf.fed.start_node(AIZU, wait_healthy=False)
        for node in (lf.takamatsu, lf.aizu):
            wait_for_port(node.client_port, 10)
            wait_for_port(node.server_port, 10)
        refused = lf.call()
        assert refused.status != 200 and refused.error.endswith(".TimestampingFailed"), (
            refused.status,
            refused.body,
        )
        assert "acceptable failure period" in json.loads(refused.body)["message"]
        for node in (lf.takamatsu, lf.aizu):
            code, health = node.health()
            assert code == 503, (node.name, health)
            assert any("time-stamping" in r for r in health["reasons"])
            assert health["messagelog"]["stamping"]["refusing"] is True
    finally:
        lf.start_tsa()
    wait_until(lambda: lf.call().status == 200, 15, "exchange to resume")
    wait_stamped(lf.takamatsu.dir)
    wait_stamped(lf.aizu.dir)
    wait_until(
        lambda: lf.takamatsu.health()[0] == 200 and lf.aizu.health()[0] == 200,
        10,
        "both nodes healthy again",
    )
    for node in (lf.takamatsu, lf.aizu):
        code, report = verify_json(node)
        assert code == 0, report["failures"]
