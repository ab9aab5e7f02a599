"""Two nodes' logs held against each other: what one side saw that the other did not.

Each node's log is tamper-evident on its own, but an insider can drop its newest
records before they are time-stamped and the chain still verifies. Every exchange
leaves records on both nodes, and each node keeps the peer's log position for the
message (the ``witness`` field, :mod:`secnode.core.witness`): the client node's
``response_in`` names the provider's ``request_in``; the provider's ``request_in``
names the client's ``request_out``. :func:`reconcile` compares two sets of records
(each already verified against its own trust anchor by the caller) and reports:

``one_side_only``      a record of an exchange between the two nodes whose counterpart
                       the other log lacks (a request that reached the provider, or a
                       response the client received)
``digest_mismatch``    both logs hold the message, but the signed digest, the body
                       digest or the header digest differ
``witnessed_missing``  one log witnesses a position (chain#seq) the other log no longer
                       has: a dropped record, provable even before it was time-stamped
``witnessed_altered``  the record at a witnessed position is not the one witnessed (its
                       hash differs, it does not recompute, or it is another message)

Pure: the records are given; loading and verifying them is the caller's
(:mod:`secnode.messagelog.reconcile`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from secnode.core.messagelog.record import Direction, LogRecord
from secnode.core.witness import LogPosition, WitnessError, witnessed_position

#: Reason prefix of a client node's refusal record when the provider node refused.
PROVIDER_REFUSAL_PREFIX = "provider node:"


class ReconcileKind(enum.StrEnum):
    ONE_SIDE_ONLY = "one_side_only"
    DIGEST_MISMATCH = "digest_mismatch"
    WITNESSED_MISSING = "witnessed_missing"
    WITNESSED_ALTERED = "witnessed_altered"


@dataclass(frozen=True)
class ExchangeKey:
    """One exchange as both nodes name it."""

    client_id: str
    service_id: str
    message_id: str

    def describe(self) -> str:
        return f"{self.message_id} ({self.client_id} -> {self.service_id})"


@dataclass(frozen=True)
class ReconcileFinding:
    kind: ReconcileKind
    exchange: ExchangeKey
    side: str
    """The side whose log holds the evidence (the other side lacks or contradicts it)."""
    message: str
    record: str | None = None
    """The evidence record (``chain#seq (id)``) on ``side``."""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "exchange": {
                "client": self.exchange.client_id,
                "service": self.exchange.service_id,
                "message_id": self.exchange.message_id,
            },
            "side": self.side,
            "record": self.record,
            "message": self.message,
        }

    def describe(self) -> str:
        return f"{self.kind.value}: exchange {self.exchange.describe()}: {self.message}"


@dataclass
class LogSide:
    """One node's records (from its database and/or archives) and who the node is."""

    name: str
    records: list[LogRecord]
    members: set[str] = field(default_factory=set)
    """The member(s) the node serves; taken from its records' node ids when not given."""

    def __post_init__(self) -> None:
        self.members |= {member_of(r.node_id) for r in self.records}
        self.by_position = {(r.chain_id, r.seq): r for r in self.records}


@dataclass
class ReconcileReport:
    sides: list[dict[str, Any]]
    exchanges: int = 0
    witnesses: int = 0
    findings: list[ReconcileFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "sides": self.sides,
            "exchanges_compared": self.exchanges,
            "witnesses_checked": self.witnesses,
            "findings": [f.to_json() for f in self.findings],
        }


def member_of(identifier: str | None) -> str:
    """The member part (INSTANCE/CLASS/CODE) of a client, service or node id."""
    return "/".join((identifier or "").split("/")[:3])


@dataclass
class _Exchange:
    """One exchange's records on one side, by direction (the first of each kind)."""

    records: dict[Direction, LogRecord] = field(default_factory=dict)

    def add(self, record: LogRecord) -> None:
        self.records.setdefault(record.direction, record)

    def get(self, direction: Direction) -> LogRecord | None:
        return self.records.get(direction)


def _key(r: LogRecord) -> ExchangeKey | None:
    if r.client_id is None or r.service_id is None or r.message_id is None:
        return None
    return ExchangeKey(r.client_id, r.service_id, r.message_id)


def _role_records(side: LogSide, peer: LogSide, client_role: bool) -> dict[ExchangeKey, _Exchange]:
    """``side``'s records of exchanges with ``peer``: as the client (``client_role``) or
    as the provider. A refusal belongs to the role whose member is the client or the
    service; exchanges within one member are not between two nodes and are left out."""
    own, theirs = side.members, peer.members
    out: dict[ExchangeKey, _Exchange] = {}
    for r in side.records:
        key = _key(r)
        if key is None:
            continue
        client, service = member_of(key.client_id), member_of(key.service_id)
        if client == service:
            continue
        if client_role:
            wanted = {Direction.REQUEST_OUT, Direction.RESPONSE_IN, Direction.REFUSAL}
            mine = client in own and service in theirs
        else:
            wanted = {Direction.REQUEST_IN, Direction.RESPONSE_OUT, Direction.REFUSAL}
            mine = service in own and client in theirs
        if mine and r.direction in wanted:
            out.setdefault(key, _Exchange()).add(r)
    return out


def reconcile(a: LogSide, b: LogSide) -> ReconcileReport:
    """Compare two nodes' logs (see module docstring); findings name the exchange."""
    report = ReconcileReport(
        sides=[
            {"name": s.name, "members": sorted(s.members), "records": len(s.records)}
            for s in (a, b)
        ]
    )
    for client, provider in ((a, b), (b, a)):
        _compare(report, client, provider)
    return report


def _compare(report: ReconcileReport, client: LogSide, provider: LogSide) -> None:
    """Exchanges ``client`` made to ``provider``: both logs' records, and their witnesses."""
    sent = _role_records(client, provider, client_role=True)
    served = _role_records(provider, client, client_role=False)
    for key in sorted(set(sent) | set(served), key=lambda k: (k.message_id, k.client_id)):
        report.exchanges += 1
        c = sent.get(key, _Exchange())
        p = served.get(key, _Exchange())
        _pair_request(report, key, client, provider, c, p)
        _pair_response(report, key, client, provider, c, p)
        _witness(report, key, client, provider, c.get(Direction.RESPONSE_IN), Direction.REQUEST_IN)
        _witness(report, key, provider, client, p.get(Direction.REQUEST_IN), Direction.REQUEST_OUT)


def _reached_provider(c: _Exchange) -> bool:
    """Whether the client's log shows the request arrived: a signed response, or the
    provider node's refusal."""
    refusal = c.get(Direction.REFUSAL)
    return c.get(Direction.RESPONSE_IN) is not None or (
        refusal is not None and (refusal.reason or "").startswith(PROVIDER_REFUSAL_PREFIX)
    )


def _pair_request(
    report: ReconcileReport,
    key: ExchangeKey,
    client: LogSide,
    provider: LogSide,
    c: _Exchange,
    p: _Exchange,
) -> None:
    out, got = c.get(Direction.REQUEST_OUT), p.get(Direction.REQUEST_IN)
    if out is not None and got is not None:
        _same_message(report, key, client, provider, out, got, "request")
    elif got is not None:
        _one_side(report, key, provider, got, f"{client.name} has no request_out for it")
    elif out is not None and _reached_provider(c) and p.get(Direction.REFUSAL) is None:
        _one_side(
            report,
            key,
            client,
            out,
            f"{client.name} sent it and was answered, but {provider.name} has no "
            "request_in (nor a refusal) for it",
        )


def _pair_response(
    report: ReconcileReport,
    key: ExchangeKey,
    client: LogSide,
    provider: LogSide,
    c: _Exchange,
    p: _Exchange,
) -> None:
    got, sent = c.get(Direction.RESPONSE_IN), p.get(Direction.RESPONSE_OUT)
    if got is not None and sent is not None:
        _same_message(report, key, provider, client, sent, got, "response")
    elif got is not None:
        _one_side(report, key, client, got, f"{provider.name} has no response_out for it")
    elif sent is not None and c.get(Direction.REQUEST_OUT) is not None:
        # The client may have failed after the provider answered (a refusal then says so).
        if c.get(Direction.REFUSAL) is None:
            _one_side(
                report,
                key,
                provider,
                sent,
                f"{client.name} logged the request but has no response_in nor a refusal",
            )
    elif sent is not None:
        _one_side(report, key, provider, sent, f"{client.name} has no record of it")


def _same_message(
    report: ReconcileReport,
    key: ExchangeKey,
    side: LogSide,
    other: LogSide,
    mine: LogRecord,
    theirs: LogRecord,
    what: str,
) -> None:
    """The two records of one message must agree on what was signed and sent."""
    for name in ("signed_digest", "body_sha256", "headers_sha256", "body_size"):
        left, right = getattr(mine, name), getattr(theirs, name)
        if left != right:
            report.findings.append(
                ReconcileFinding(
                    ReconcileKind.DIGEST_MISMATCH,
                    key,
                    side.name,
                    f"the {what}'s {name} differs: {side.name} {mine.ref} has {_show(left)}, "
                    f"{other.name} {theirs.ref} has {_show(right)}",
                    mine.ref,
                )
            )


def _witness(
    report: ReconcileReport,
    key: ExchangeKey,
    holder: LogSide,
    peer: LogSide,
    record: LogRecord | None,
    expected: Direction,
) -> None:
    """``record`` (in ``holder``'s log) witnesses a position in ``peer``'s log."""
    if record is None:
        return
    if record.witness is None:
        return  # a node without a log on the other side, or a record before witnessing
    report.witnesses += 1
    try:
        position = witnessed_position(record.witness)
    except WitnessError as exc:
        report.findings.append(
            ReconcileFinding(
                ReconcileKind.WITNESSED_ALTERED,
                key,
                holder.name,
                f"{record.ref} holds an unreadable witness: {exc}",
                record.ref,
            )
        )
        return
    there = peer.by_position.get((position.chain_id, position.seq))
    if there is None:
        report.findings.append(
            ReconcileFinding(
                ReconcileKind.WITNESSED_MISSING,
                key,
                holder.name,
                f"{holder.name} {record.ref} witnesses {peer.name}'s {expected.value} at "
                f"{_where(position)}, which {peer.name}'s log no longer has",
                record.ref,
            )
        )
        return
    problem = _differs(position, there, key, expected)
    if problem:
        report.findings.append(
            ReconcileFinding(
                ReconcileKind.WITNESSED_ALTERED,
                key,
                holder.name,
                f"{holder.name} {record.ref} witnesses {peer.name}'s {expected.value} at "
                f"{_where(position)}, but {peer.name}'s record {there.ref} {problem}",
                record.ref,
            )
        )


def _differs(position: LogPosition, there: LogRecord, key: ExchangeKey, expected: Direction) -> str:
    """Why the record at a witnessed position is not the witnessed one ('' if it is)."""
    if there.record_hash != position.record_hash:
        return f"has hash {there.record_hash.hex()[:16]}... (rewritten)"
    if not there.hash_ok():
        return "no longer recomputes to that hash (altered)"
    if _key(there) != key or there.direction is not expected:
        return f"is another message ({there.direction.value} {there.message_id})"
    return ""


def _one_side(
    report: ReconcileReport, key: ExchangeKey, side: LogSide, record: LogRecord, why: str
) -> None:
    report.findings.append(
        ReconcileFinding(
            ReconcileKind.ONE_SIDE_ONLY,
            key,
            side.name,
            f"{record.direction.value} {record.ref} is in {side.name}'s log only: {why}",
            record.ref,
        )
    )


def _where(position: LogPosition) -> str:
    return f"{position.ref} (hash {position.record_hash.hex()[:16]}...)"


def _show(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex()[:16] + "..."
    return repr(value)


def side_of(name: str, records: Iterable[LogRecord], members: Iterable[str] = ()) -> LogSide:
    """A :class:`LogSide` from any iterable of records (copies counted once)."""
    unique = {(r.chain_id, r.seq, r.record_hash): r for r in records}
    return LogSide(name, list(unique.values()), set(members))
