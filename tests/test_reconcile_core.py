"""The pure comparison of two logs (``secnode.core.messagelog.reconcile``), case by case.

Records are sealed with :meth:`LogRecord.create` into one chain per node, as the
writer would; the real two-node runs are in ``tests/test_messagelog_reconcile.py``.
"""

from __future__ import annotations

import datetime as dt

import pytest

from secnode.core.messagelog import LogRecord, genesis_hash
from secnode.core.messagelog.reconcile import LogSide, ReconcileReport, reconcile, side_of
from secnode.core.witness import LogPosition, RequestWitness

CLIENT_NODE, PROVIDER_NODE = "JP/GOV/372013/ss1", "JP/GOV/072028/ss1"
CLIENT, SERVICE = "JP/GOV/372013/portal", "JP/GOV/072028/residents/echo"
T0 = dt.datetime(2026, 4, 1, 9, 30, tzinfo=dt.UTC)


class Chain:
    """One node's chain, sealed record by record."""

    def __init__(self, node_id: str) -> None:
        self.node_id, self.chain_id = node_id, f"{node_id}#0000000a"
        self.records: list[LogRecord] = []

    def add(self, direction: str, mid: str, witness: str | None = None, **kw: object) -> LogRecord:
        prev = self.records[-1].record_hash if self.records else genesis_hash(self.chain_id)
        fields: dict[str, object] = {
            "body": f"body of {mid} {direction.split('_')[0]}".encode(),
            "signed_digest": f"{mid}-{direction.split('_')[0]}".encode().ljust(32, b"."),
            "signature": b"sig",
            **kw,
        }
        record = LogRecord.create(
            chain_id=self.chain_id,
            seq=len(self.records) + 1,
            prev_hash=prev,
            time=T0 + dt.timedelta(seconds=len(self.records)),
            direction=direction,
            node_id=self.node_id,
            headers_sha256=bytes(32),
            client_id=CLIENT,
            service_id=SERVICE,
            message_id=mid,
            witness=witness,
            **fields,  # type: ignore[arg-type]
        )
        self.records.append(record)
        return record


def position(r: LogRecord) -> LogPosition:
    return LogPosition(r.chain_id, r.seq, r.record_hash)


def exchange(client: Chain, provider: Chain, mid: str) -> None:
    """A witnessed exchange, logged in the order the nodes log it."""
    out = client.add("request_out", mid)
    got = provider.add("request_in", mid, RequestWitness(position(out), b"sig").encode())
    provider.add("response_out", mid)
    client.add("response_in", mid, position(got).encode())


def sides(
    client: Chain, provider: Chain, drop: frozenset[tuple[str, int]] = frozenset()
) -> tuple[LogSide, LogSide]:
    """Both logs, without the records in ``drop`` ((node id, seq) pairs)."""

    def keep(chain: Chain) -> list[LogRecord]:
        return [r for r in chain.records if (chain.node_id, r.seq) not in drop]

    return side_of("client", keep(client)), side_of("provider", keep(provider))


@pytest.fixture
def nodes() -> tuple[Chain, Chain]:
    client, provider = Chain(CLIENT_NODE), Chain(PROVIDER_NODE)
    for mid in ("m1", "m2", "m3"):
        exchange(client, provider, mid)
    return client, provider


def kinds(report: ReconcileReport) -> list[tuple[str, str]]:
    return sorted((f.kind.value, f.exchange.message_id) for f in report.findings)


def test_clean(nodes: tuple[Chain, Chain]) -> None:
    report = reconcile(*sides(*nodes))
    assert report.ok and report.exchanges == 3 and report.witnesses == 6


@pytest.mark.parametrize(
    ("node", "seq", "expected"),
    [
        # the provider drops request_in of m3 (its seq 5): the client's response_in witnesses it
        (PROVIDER_NODE, 5, [("one_side_only", "m3"), ("witnessed_missing", "m3")]),
        # the provider drops response_out of m2: the client holds the signed response
        (PROVIDER_NODE, 4, [("one_side_only", "m2")]),
        # the client drops request_out of m1: the provider's request_in witnesses it
        (CLIENT_NODE, 1, [("one_side_only", "m1"), ("witnessed_missing", "m1")]),
        # the client drops response_in of m3: the provider answered, the client has no record
        (CLIENT_NODE, 6, [("one_side_only", "m3")]),
    ],
)
def test_a_dropped_record_is_named_by_its_exchange(
    nodes: tuple[Chain, Chain], node: str, seq: int, expected: list[tuple[str, str]]
) -> None:
    assert kinds(reconcile(*sides(*nodes, frozenset({(node, seq)})))) == expected


def test_a_request_that_never_reached_the_provider_is_no_finding(
    nodes: tuple[Chain, Chain],
) -> None:
    client, provider = nodes
    client.add("request_out", "m4")
    client.add("refusal", "m4", reason="Server.ClientProxy.NetworkError: could not reach")
    assert reconcile(*sides(client, provider)).ok
    client.add("request_out", "m5")
    client.add("refusal", "m5", reason="provider node: Client.InvalidSignature ...")
    provider.add("refusal", "m5", reason="Client.InvalidSignature ...")
    assert reconcile(*sides(client, provider)).ok


def test_different_bodies_are_a_digest_mismatch(nodes: tuple[Chain, Chain]) -> None:
    client, provider = nodes
    out = client.add("request_out", "m4")
    got = provider.add(
        "request_in",
        "m4",
        RequestWitness(position(out), b"sig").encode(),
        body=b"another body",
    )
    provider.add("response_out", "m4")
    client.add("response_in", "m4", position(got).encode())
    report = reconcile(*sides(client, provider))
    assert kinds(report) == [("digest_mismatch", "m4"), ("digest_mismatch", "m4")]
    assert {f.message.split("'s ")[1].split(" ")[0] for f in report.findings} == {
        "body_sha256",
        "body_size",
    }


def test_a_witness_pointing_at_another_record_is_altered(nodes: tuple[Chain, Chain]) -> None:
    client, provider = nodes
    wrong = provider.records[0]  # m1's request_in, claimed for m4
    client.add("request_out", "m4")
    client.add("response_in", "m4", position(wrong).encode())
    report = reconcile(*sides(client, provider))
    assert ("witnessed_altered", "m4") in kinds(report)
    assert any("another message" in f.message for f in report.findings)
