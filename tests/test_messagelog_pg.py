"""The message log on PostgreSQL with two node processes writing to one database.

Takamatsu's node runs as two ``secnode serve`` processes (the second a copy
of its directory on other ports, as behind a load balancer) sharing one
PostgreSQL tables. Each process writes its own chain (``docs/audit.md`` §5),
stamps it with a compare-and-set on the chain row, and the auditor verifies
both chains from the one database.
"""

from __future__ import annotations

import json
import shutil

import pytest
from sqlalchemy import create_engine, func, select

from secnode.messagelog import tables
from tests.conftest import free_port
from tests.support.common import set_toml, wait_until
from tests.support.logfed import AIZU, TAKAMATSU, build_log_federation, log_cli, verify_json

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_two_processes_share_one_postgresql_log(
    tmp_path_factory: pytest.TempPathFactory, pg_schema: str
) -> None:
    base = tmp_path_factory.mktemp("mlog-pg")
    lf = build_log_federation(
        base / "fed",
        settings={"timestamping_interval": 1},
        node_config={"messagelog": {"archive_interval": 0, "timestamp_batch_size": 5}},
        db_urls={TAKAMATSU: pg_schema},
    )
    try:
        lf.start_nodes()
        second = shutil.copytree(lf.takamatsu.dir, base / "takamatsu-2")
        client_port = free_port()
        for section, port in (
            ("client", client_port),
            ("server", free_port()),
            ("admin", free_port()),
        ):
            set_toml(second / "secnode.toml", section, "port", port)
        lf.fed.start("node-takamatsu-2", "secnode", "serve", "--dir", second, port=client_port)
        first_url, second_url = lf.takamatsu.client_url, f"http://127.0.0.1:{client_port}"
        replies = [lf.call(client_url=url) for _ in range(12) for url in (first_url, second_url)]
        assert {r.status for r in replies} == {200}, replies[0].body
        engine = create_engine(pg_schema)
        try:

            def unstamped() -> int:
                with engine.connect() as conn:
                    c, r = tables.chains, tables.records
                    last = (
                        select(func.max(r.c.seq))
                        .where(r.c.chain_id == c.c.chain_id)
                        .scalar_subquery()
                    )
                    rows = conn.execute(select(c.c.stamped_seq, last)).all()
                return sum(int(last or 0) - int(stamped) for stamped, last in rows)

            wait_until(lambda: unstamped() == 0, 20, "both chains stamped")
            with engine.connect() as conn:
                chains = conn.execute(select(tables.chains.c.chain_id)).scalars().all()
                count = conn.execute(select(func.count()).select_from(tables.records)).scalar()
        finally:
            engine.dispose()
        assert len(chains) == 2 and count == 4 * 12
        code, report = verify_json(lf.takamatsu)
        assert code == 0, report["failures"]
        assert sorted(report["chains"]) == sorted(chains)
        assert all(c["records"] == 24 for c in report["chains"].values())
        assert report["checked"]["proofs"] == 48 and report["checked"]["signatures"] == 48
        # archiving and retention on PostgreSQL: one archive sequence across both chains
        lf.takamatsu.set_config("messagelog", "retention_days", 0)
        out = log_cli(lf.takamatsu, "archive", "--json")
        assert out.exit_code == 0, out.output
        assert len(json.loads(out.stdout)["archives"]) == 2
        code, report = verify_json(lf.takamatsu)
        assert code == 0, report["failures"]
        assert report["checked"]["archives"] == 2 and report["checked"]["records"] >= 48
    finally:
        lf.close()


def test_two_workers_of_one_node_share_one_postgresql_database(
    tmp_path_factory: pytest.TempPathFactory, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve --workers 2`` on PostgreSQL: both workers serve, each its own chain, one
    replay window (a message id accepted by one worker is refused by the other)."""
    base = tmp_path_factory.mktemp("workers-pg")
    lf = build_log_federation(
        base / "fed",
        settings={"timestamping_interval": 1},
        node_config={"messagelog": {"archive_interval": 0, "timestamp_batch_size": 5}},
        db_urls={TAKAMATSU: pg_schema},
    )
    monkeypatch.setenv("SECNODE_WORKERS", "2")
    try:
        for name in (AIZU, TAKAMATSU):
            lf.fed.start_node(name, timeout=120)  # two interpreters each start on a busy host
        replies = [lf.call() for _ in range(30)]
        assert {r.status for r in replies} == {200}, replies[0].body
        engine = create_engine(pg_schema)
        try:
            with engine.connect() as conn:
                per_chain = dict(
                    conn.execute(
                        select(tables.records.c.chain_id, func.count())
                        .where(tables.records.c.direction == "request_out")
                        .group_by(tables.records.c.chain_id)
                    ).all()
                )
        finally:
            engine.dispose()
        assert sum(per_chain.values()) == 30
        assert len(per_chain) == 2, f"one worker took every connection: {per_chain}"
        # The same message id twice, on fresh connections: whichever worker takes the
        # second, the database's replay window refuses it at the provider.
        first = lf.call(message_id="workers-replay-1")
        again = [lf.call(message_id="workers-replay-1") for _ in range(3)]
        assert first.status == 200
        assert all(r.status != 200 for r in again), [r.body for r in again]
        code, report = verify_json(lf.takamatsu)
        assert code == 0, report["failures"]
        assert sorted(report["chains"]) == sorted(per_chain)
    finally:
        lf.close()
